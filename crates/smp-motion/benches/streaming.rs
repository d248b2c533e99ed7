//! Host-side figures of the executor against the simulated controller over a real pty:
//!
//! - `throughput/<protocol>`: a whole session streamed with zero motion time (machine time
//!   runs 1e9 times faster than the clock), bytes written per second of streaming. Printed
//!   next to the 11 520 B/s a 115200-baud 8N1 link carries. A pty has no baud limit and the
//!   simulator does not pace its reads, so a figure far above 11 520 B/s means the host (pump,
//!   journal commits, protocol) never starves a 115200 link: the link would be the limit.
//!   (The simulator's own line-rate ceiling is `cargo bench -p smp-sim --bench controller`.)
//! - `feed_hold_latency/<protocol>`: from a thread sending `OperatorCommand::Pause` to the
//!   feed-hold byte written to the port, mid-stream, with the journal at full durability
//!   (fsync per commit), the worst place for it. Target: 5 ms.
//!
//! Run with `cargo bench -p smp-motion --bench streaming`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use serialport::TTYPort;
use smp_gcode::fixtures::synthetic_case;
use smp_gcode::{compile, verify, VerifiedProgram};
use smp_motion::{
    execute_with_control, unbounded_channel, Control, ExecuteConfig, ExecutorUpdate, OperatorCommand, Protocol,
};
use smp_sim::controller::{ControllerConfig, NoSkin, ProtocolMode, SimController};
use smp_sim::pty::PtyController;
use smp_store::{Durability, Journal, SessionMeta};

/// What a 115200-baud 8N1 link carries, bytes per second.
const LINK_BYTES_PER_S: f64 = 11_520.0;

fn program(n_dots: usize) -> (VerifiedProgram, smp_core::plan::SessionPlan, String) {
    let c = synthetic_case(n_dots);
    let p = compile(&c.plan, &c.rig, &c.base_from_head).expect("compiles");
    let v = verify(p, &c.plan, &c.map, &c.rig, &c.base_from_head).expect("verifies");
    (v, c.plan, c.rig.name)
}

fn journal(dir: &tempfile::TempDir, plan: &smp_core::plan::SessionPlan, rig: &str, d: Durability) -> Journal {
    let meta = SessionMeta {
        patient: "bench".into(),
        session: plan.session,
        rig_name: rig.into(),
        seed: 1,
        plan_json: "{}".into(),
    };
    let path = dir.path().join(format!("j{}.sqlite", Instant::now().elapsed().as_nanos()));
    let _ = std::fs::remove_file(&path);
    let mut j = Journal::create(&path, &meta).expect("journal");
    j.insert_plan(plan).expect("plan");
    j.set_durability(d).expect("durability");
    j
}

fn sim(protocol: Protocol, time_scale: f64) -> Option<(TTYPort, PtyController)> {
    let (host, device) = TTYPort::pair().ok()?;
    let mut cfg = ControllerConfig { time_scale, ..ControllerConfig::default() };
    // The synthetic case's workspace: wide travel, no soft-limit alarms.
    for a in [&mut cfg.dynamics.x, &mut cfg.dynamics.y, &mut cfg.dynamics.z] {
        a.min_mm = -1000.0;
        a.max_mm = 1000.0;
    }
    cfg.soft_limits = false;
    if protocol == Protocol::Marlin {
        cfg.protocol = ProtocolMode::Marlin;
    }
    let c = SimController::new(cfg, Box::new(NoSkin)).ok()?;
    Some((host, PtyController::spawn(device, c).ok()?))
}

fn bench(c: &mut Criterion) {
    let protocols = [Protocol::Grbl, Protocol::GrblSendResponse, Protocol::Marlin];
    let (verified, plan, rig) = program(150);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("throughput");
    g.sample_size(10);
    for protocol in protocols {
        let mut best = 0.0f64;
        g.bench_function(protocol.as_str(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let Some((host, sim)) = sim(protocol, 1e9) else { return Duration::from_secs(1) };
                    let mut j = journal(&dir, &plan, &rig, Durability::ProcessCrash);
                    let cfg = ExecuteConfig { protocol, status_interval: Duration::ZERO, ..ExecuteConfig::default() };
                    let mut obs = |_: ExecutorUpdate| {};
                    match execute_with_control(
                        &verified,
                        host,
                        &mut j,
                        &cfg,
                        Control { commands: None, observer: &mut obs },
                    ) {
                        Ok(r) => {
                            total += Duration::from_secs_f64(r.stream_time_s);
                            best = best.max(r.bytes_written as f64 / r.stream_time_s.max(1e-9));
                        }
                        Err(e) => eprintln!("{protocol}: {e}"),
                    }
                    sim.shutdown();
                }
                total
            })
        });
        println!(
            "throughput/{protocol}: best {best:.0} B/s written = {:.1} x the 115200-baud link ({LINK_BYTES_PER_S} B/s)",
            best / LINK_BYTES_PER_S
        );
    }
    g.finish();

    let mut g = c.benchmark_group("feed_hold_latency");
    g.sample_size(10);
    for protocol in [Protocol::Grbl, Protocol::GrblSendResponse] {
        let mut worst = 0.0f64;
        g.bench_function(protocol.as_str(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let Some((host, sim)) = sim(protocol, 200.0) else { return Duration::from_secs(1) };
                    let mut j = journal(&dir, &plan, &rig, Durability::PowerLoss);
                    let cfg = ExecuteConfig { protocol, ..ExecuteConfig::default() };
                    let (tx, rx) = unbounded_channel();
                    let sent_at = Arc::new(Mutex::new(None::<Instant>));
                    let latency = Arc::new(Mutex::new(None::<Duration>));
                    let (s2, l2) = (sent_at.clone(), latency.clone());
                    let mut obs = move |u: ExecutorUpdate| {
                        if let ExecutorUpdate::Command(a) = u {
                            if a.command == OperatorCommand::Pause {
                                if let (Some(s), Some(w)) = (*s2.lock().expect("lock"), a.written_at) {
                                    *l2.lock().expect("lock") = Some(w.duration_since(s));
                                }
                            }
                        }
                    };
                    let s3 = sent_at.clone();
                    // Somewhere mid-stream, not aligned with the pump's turns.
                    let delay = Duration::from_millis(150 + (i % 7) * 13);
                    let sender = std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        *s3.lock().expect("lock") = Some(Instant::now());
                        let _ = tx.send(OperatorCommand::Pause);
                        std::thread::sleep(Duration::from_millis(50));
                        let _ = tx.send(OperatorCommand::Resume);
                    });
                    let r = execute_with_control(
                        &verified,
                        host,
                        &mut j,
                        &cfg,
                        Control { commands: Some(rx), observer: &mut obs },
                    );
                    let _ = sender.join();
                    if let Err(e) = r {
                        eprintln!("{protocol}: {e}");
                    }
                    sim.shutdown();
                    let l = latency.lock().expect("lock").unwrap_or(Duration::from_secs(1));
                    worst = worst.max(l.as_secs_f64());
                    total += l;
                }
                total
            })
        });
        println!("feed_hold_latency/{protocol}: worst {:.3} ms (target 5 ms)", worst * 1e3);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
