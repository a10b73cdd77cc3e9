//! Measures how far past its deadline a diagnosis finishes when a live probe hangs.
//!
//! A local server accepts connections and never answers; each diagnosis needs a whoami fact
//! from it. Run: `cargo run --release --example deadline_overshoot [RUNS] [DEADLINE_MS]`.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use whyfail_engine::{Event, Options, diagnose};
use whyfail_providers::{LiveConfig, LiveProvider};

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let deadline_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);

    // A server that accepts and then says nothing, forever.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            let mut s2 = s;
            let mut buf = [0u8; 1024];
            let _ = s2.read(&mut buf);
            held.push(s2);
        }
    });

    let (lib, _) = whyfail::load_library(&[] as &[PathBuf], true);
    let live = LiveProvider::new(LiveConfig {
        allow_hosts: vec!["127.0.0.1".into()],
        probe_timeout: Duration::from_secs(60),
        // Every run must hit the hanging probe, not a cached failure.
        error_ttl: Duration::from_millis(1),
        ..LiveConfig::default()
    })
    .expect("runtime");
    let deadline = Duration::from_millis(deadline_ms);
    let mut over = Vec::with_capacity(runs);
    for i in 0..runs {
        let event = format!(
            r#"{{"error":{{"status":403,"message":"Resource not accessible by integration"}},
               "connection":{{"id":"c{i}","provider":"github","auth_type":"oauth2",
               "base_url":"http://127.0.0.1:{port}","required_scopes":["repo"],
               "secrets":{{"access_token":"t{i}"}}}}}}"#
        );
        let e = Event::parse(&event).expect("event");
        let t = Instant::now();
        let _ = diagnose(
            &lib,
            &e,
            &Options {
                provider: Some(&live),
                deadline: Some(deadline),
                ..Options::default()
            },
        );
        over.push(t.elapsed().saturating_sub(deadline));
    }
    over.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{runs} diagnoses, deadline {deadline_ms} ms, overshoot: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(over[runs / 2]),
        ms(over[(runs * 99 / 100).min(runs - 1)]),
        ms(over[runs - 1])
    );
}
