//! Last line of defence for secrets: any text that goes into a resolution passes through here,
//! and every occurrence of a secret value of the event is replaced by `[redacted]`.
//!
//! Scripts never see secret values (see `event`), so this only matters for text the event
//! itself carries, such as a platform that pasted a token into an error message.

use super::event::Event;

pub(crate) const REDACTED: &str = "[redacted]";

/// Secret values shorter than this are not scrubbed: they would match ordinary words.
const MIN_SECRET_LEN: usize = 6;

pub(crate) struct Scrubber<'a> {
    secrets: Vec<&'a str>,
}

impl<'a> Scrubber<'a> {
    pub fn new(event: &'a Event) -> Self {
        let mut secrets: Vec<&str> = Vec::new();
        if event.has_secrets() {
            for v in event.secret_values() {
                for piece in [v, v.trim()] {
                    if piece.len() >= MIN_SECRET_LEN && !secrets.contains(&piece) {
                        secrets.push(piece);
                    }
                }
            }
            // Longest first so a secret containing another is removed whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        Scrubber { secrets }
    }

    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s) {
                out = out.replace(s, REDACTED);
            }
        }
        out
    }

    pub fn is_active(&self) -> bool {
        !self.secrets.is_empty()
    }
}
