//! The tests' realistic-AWS proxy as a program, for the bench and for trying `infra` by hand:
//!
//!     cargo run --example realistic_proxy -- --upstream http://127.0.0.1:5000 [--scale 0.025]
//!         [--port N] [--behaviours all|Name,Name,...] [--busy-account] [--integration public|private]
//!         [--transient-scale X]
//!
//! Unlike the tests, eventual-consistency windows are compressed by the same scale as the
//! states unless `--transient-scale` says otherwise, so that the critical path printed is
//! the one the proxy really imposes.
//!
//! Prints `url <proxy url>`, then the critical path of the configured durations for that
//! integration (`critical up <secs> <chain>`, `critical down <secs> <chain>`), and serves
//! until killed. `GET <url>/__realistic/fired` answers what fired so far, as JSON.

#![allow(dead_code)]

#[path = "../tests/support/fault_proxy.rs"]
mod fault_proxy;
#[path = "../tests/support/realistic.rs"]
mod realistic;

use realistic::{Behaviour, Profile, RealisticProxy};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut upstream, mut scale, mut port, mut behaviours, mut busy, mut private) = (None, 1.0 / 40.0, 0u16, None, false, false);
    let mut transient_scale = None;
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--upstream" => upstream = Some(value()),
            "--scale" => scale = parse_scale(&value()),
            "--port" => port = value().parse().unwrap_or_else(|_| usage("--port takes a number")),
            "--behaviours" => behaviours = Some(value()),
            "--busy-account" => busy = true,
            "--integration" => private = value() == "private",
            "--transient-scale" => transient_scale = Some(parse_scale(&value())),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let upstream = upstream.unwrap_or_else(|| usage("--upstream is required"));
    let chosen: Vec<Behaviour> = match behaviours.as_deref() {
        None | Some("all") => Behaviour::ALL.to_vec(),
        Some(list) => list.split(',').map(|n| Behaviour::from_name(n.trim()).unwrap_or_else(|| usage(&format!("no behaviour {n}")))).collect(),
    };
    let mut profile = Profile::new(chosen, scale);
    profile.busy_account = busy;
    profile.transient_scale = transient_scale.unwrap_or(scale);
    let critical = profile.critical_path(private);
    let proxy = RealisticProxy::start_on(&upstream, profile, port);
    println!("url {}", proxy.url);
    let (chain, secs) = critical.up();
    println!("critical up {secs:.2} {chain}");
    let (chain, secs) = critical.up_with_cache();
    println!("critical up_with_cache {secs:.2} {chain}");
    let (chain, secs) = critical.down();
    println!("critical down {secs:.2} {chain}");
    for (chain, secs) in critical.up.iter().map(|c| ("up", c)).chain(critical.down.iter().map(|c| ("down", c))).map(|(p, (n, s))| (format!("{p}: {n}"), *s)) {
        println!("chain {secs:.2} {chain}");
    }
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}

/// `0.025` or `1/40`.
fn parse_scale(s: &str) -> f64 {
    let v = match s.split_once('/') {
        Some((a, b)) => a.trim().parse::<f64>().ok().zip(b.trim().parse::<f64>().ok()).map(|(a, b)| a / b),
        None => s.parse().ok(),
    };
    v.filter(|v| *v > 0.0 && v.is_finite()).unwrap_or_else(|| usage("--scale takes a positive number or a fraction like 1/40"))
}

fn usage(problem: &str) -> ! {
    eprintln!("realistic_proxy: {problem}\nusage: realistic_proxy --upstream http://host:port [--scale 1/40] [--port N] [--behaviours all|A,B] [--busy-account] [--integration public|private]");
    std::process::exit(2);
}
