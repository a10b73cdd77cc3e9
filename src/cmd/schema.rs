//! `whyfail schema playbook|event|resolution`: prints the JSON Schema generated from the types.

use super::{OK, USAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Which schema.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(whyfail_engine::schema::KINDS))]
    kind: String,
}

pub fn run(args: Args) -> u8 {
    match whyfail_engine::schema::schema_json(&args.kind) {
        Some(s) => {
            super::emit(s.trim_end_matches('\n'));
            OK
        }
        None => {
            eprintln!("whyfail: unknown schema `{}`", args.kind);
            USAGE
        }
    }
}
