//! Line rate of the simulated grbl over a real pty with zero motion time: the ceiling the
//! simulator puts on a streaming host (a real grbl at 115200 baud manages roughly 500-1000
//! short lines per second), so a slow session in simulation is never the simulator's fault.
//!
//! Motion takes no wall time because machine time runs 1e9 times faster than the clock, so
//! every measured microsecond is serial I/O, line parsing and the protocol loop.
//!
//! Run with `cargo bench -p smp-sim --bench controller`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serialport::{SerialPort, TTYPort};
use smp_sim::controller::{ControllerConfig, NoSkin, SimController};
use smp_sim::pty::PtyController;

/// Lines per measured batch.
const LINES: usize = 500;
/// grbl's RX buffer.
const RX_BYTES: usize = 128;

struct Host {
    port: TTYPort,
    pending: Vec<u8>,
}

impl Host {
    /// Reads what arrived (waiting up to 1 ms); returns the number of `ok`/`error` answers.
    fn answers(&mut self) -> usize {
        let mut buf = [0u8; 4096];
        let _ = self.port.set_timeout(Duration::from_millis(1));
        if let Ok(n) = self.port.read(&mut buf) {
            self.pending.extend_from_slice(&buf[..n]);
        }
        let mut count = 0;
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            if line.starts_with(b"ok") || line.starts_with(b"error:") {
                count += 1;
            }
        }
        count
    }

    /// Streams `lines` with character counting until all are answered; false on a stall.
    fn stream(&mut self, lines: &[String]) -> bool {
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let (mut next, mut done) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while done < lines.len() {
            if Instant::now() > deadline {
                return false;
            }
            while next < lines.len() && in_flight.iter().sum::<usize>() + lines[next].len() <= RX_BYTES {
                if self.port.write_all(lines[next].as_bytes()).is_err() {
                    return false;
                }
                in_flight.push_back(lines[next].len());
                next += 1;
            }
            for _ in 0..self.answers() {
                in_flight.pop_front();
                done += 1;
            }
        }
        true
    }
}

fn bench_controller(c: &mut Criterion) {
    let (port, device) = match TTYPort::pair() {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("cannot open a pty pair ({e}); the controller bench needs /dev/ptmx");
            return;
        }
    };
    let cfg = ControllerConfig { time_scale: 1e9, ..ControllerConfig::default() };
    let start = cfg.initial_position_mm;
    let controller = match SimController::new(cfg, Box::new(NoSkin)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("default controller config rejected: {e}");
            return;
        }
    };
    let sim = match PtyController::spawn(device, controller) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the simulated controller: {e}");
            return;
        }
    };
    let mut host = Host { port, pending: Vec::new() };
    // Typical SMP lines: absolute moves a few mm apart, inside the default rig's travel.
    let lines: Vec<String> = (0..LINES)
        .map(|k| {
            let dx = (k % 10) as f64 * 0.5;
            let dz = if k % 2 == 0 { -1.0 } else { -3.0 };
            format!("G1 X{:.3} Y{:.3} Z{:.3} F3000\n", start[0] + dx, start[1], start[2] + dz)
        })
        .collect();

    // One timed batch first, to print the figure plainly.
    let t0 = Instant::now();
    if !host.stream(&lines) {
        eprintln!("the stream stalled; no figure");
        return;
    }
    let rate = LINES as f64 / t0.elapsed().as_secs_f64();
    println!("controller line rate over a pty, zero motion time: {rate:.0} lines/s ({LINES} lines)");

    let mut group = c.benchmark_group("smp-sim controller");
    group.sample_size(10);
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("stream 500 G1 lines over a pty", |b| b.iter(|| host.stream(&lines)));
    group.finish();
    let report = sim.shutdown();
    println!(
        "lines received {}, ok {}, errors {}, flow violations {}",
        report.stats.lines_received, report.stats.oks_sent, report.stats.errors_sent, report.stats.flow_violations
    );
}

criterion_group!(benches, bench_controller);
criterion_main!(benches);
