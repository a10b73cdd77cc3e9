// Fuzz target: arbitrary bytes as an event, parsed and diagnosed offline by the standard
// playbooks, then rendered as JSON and in every audience's words. Nothing may panic, and a
// parsed event always gives a resolution that serialises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whyfail_engine::{Audience, Event, Options, diagnose, explain};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = Event::parse(text) else {
        return;
    };
    let res = diagnose(&common::STDLIB, &event, &Options::default());
    serde_json::to_string(&res).expect("a resolution serialises");
    for audience in [Audience::User, Audience::Support, Audience::Developer] {
        explain::render(&res, audience);
    }
});
