//! Operator -> controller command latency over loopback zenoh (peer mode, tcp/127.0.0.1).
//!
//! Measures, for N pause commands: one-way (operator `send` called -> command in the
//! executor's receiver) and round trip (`send` called -> acknowledgement returned). Prints
//! median, p95 and max. Run: `cargo bench -p smp-bus --bench latency` (N from SMP_BUS_N).
#![allow(clippy::unwrap_used)]

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use smp_bus::{AckResult, BusConfig, ControlEvent, ControllerBus, OperatorBus, OperatorCommand, SessionState};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: n={} median={:.1} us p95={:.1} us max={:.1} us",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e6,
        percentile(&v, 0.95).as_secs_f64() * 1e6,
        v.last().unwrap().as_secs_f64() * 1e6
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: run either way.
    let n: usize = std::env::var("SMP_BUS_N").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ctrl_cfg = BusConfig::listening(format!("tcp/127.0.0.1:{port}"));
    let op_cfg = BusConfig { ack_timeout_s: 5.0, ..BusConfig::connecting(format!("tcp/127.0.0.1:{port}")) };
    let mut ctrl = ControllerBus::open(&ctrl_cfg, "bench").unwrap();
    let mut rx = ctrl.commands().unwrap();
    let op = OperatorBus::open(&op_cfg, "bench", "bench-op").unwrap();

    let (arrived_tx, arrived_rx) = std_mpsc::channel::<Instant>();
    let executor = std::thread::spawn(move || {
        // The executor: blocking receive, acknowledge with the safety rules at once.
        while let Some(ev) = rx.blocking_recv() {
            if let ControlEvent::Command(cmd) = ev {
                let _ = arrived_tx.send(Instant::now());
                ctrl.decide(&cmd, SessionState::Running).unwrap();
                if cmd.command == OperatorCommand::Abort {
                    break;
                }
            }
        }
        ctrl.close();
    });

    // Warm up: the first command also waits for the link and the subscriptions.
    let t_warm = Instant::now();
    assert_eq!(op.send(OperatorCommand::Pause).unwrap(), AckResult::Accepted);
    let _ = arrived_rx.recv();
    println!(
        "first command after open (link + subscriptions coming up): {:.1} ms, {} re-sends",
        t_warm.elapsed().as_secs_f64() * 1e3,
        op.stats().resends
    );

    let mut one_way = Vec::with_capacity(n);
    let mut round_trip = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let r = op.send(OperatorCommand::Pause).unwrap();
        let t1 = Instant::now();
        assert_eq!(r, AckResult::Accepted);
        let arrived = arrived_rx.recv().unwrap();
        one_way.push(arrived - t0);
        round_trip.push(t1 - t0);
    }
    let _ = op.send(OperatorCommand::Abort);
    executor.join().unwrap();
    report("operator->controller one-way", one_way);
    report("operator->controller->ack round trip", round_trip);
    println!("operator stats: {:?}", op.stats());
    op.close();
}
