//! The golden transcript: a compiled program streamed to a scripted grbl stand-in, byte for
//! byte as the host writes and reads it.

use std::collections::VecDeque;
use std::time::Duration;

use super::{GrblConfig, GrblEvent, GrblStreamer, Realtime};

/// A scripted grbl stand-in for the golden test (not smp-sim: the host protocol must not
/// be tested only against the controller it was written next to). It answers `ok` to each
/// line once it has "run" it (a `G4` takes its P seconds and synchronises), `error:20` to
/// `M7`, `[MSG:Pgm End]` then `ok` to the program end `M2`, answers `?` with a status report,
/// and asserts its 128-byte buffer never overflows.
struct ScriptedGrbl {
    rx: VecDeque<u8>,
    dwell_ok_at: Option<Duration>,
    out: Vec<u8>,
    pos: [f64; 3],
}

impl ScriptedGrbl {
    fn new() -> Self {
        ScriptedGrbl {
            rx: VecDeque::new(),
            dwell_ok_at: None,
            out: b"\r\nGrbl 1.1h ['$' for help]\r\n".to_vec(),
            pos: [0.0; 3],
        }
    }

    fn receive(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'?' {
                let p = self.pos;
                self.out.extend_from_slice(
                    format!("<Idle|MPos:{:.3},{:.3},{:.3}|FS:0,0>\r\n", p[0], p[1], p[2]).as_bytes(),
                );
            } else {
                self.rx.push_back(b);
                assert!(self.rx.len() <= 128, "controller rx buffer overflow");
            }
        }
    }

    fn tick(&mut self, now: Duration) {
        if let Some(at) = self.dwell_ok_at {
            if now < at {
                return;
            }
            self.out.extend_from_slice(b"ok\r\n");
            self.dwell_ok_at = None;
        }
        while let Some(end) = self.rx.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.rx.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if line.starts_with("M7") {
                self.out.extend_from_slice(b"error:20\r\n");
                continue;
            }
            if line.starts_with("M2") {
                // grbl 1.1: the program end says so before its `ok`.
                self.out.extend_from_slice(b"[MSG:Pgm End]\r\nok\r\n");
                continue;
            }
            let mut dwell_s = None;
            for w in line.split(' ') {
                if let Some(p) = w.strip_prefix('P') {
                    dwell_s = p.parse::<f64>().ok();
                }
                for (i, axis) in ['X', 'Y', 'Z'].into_iter().enumerate() {
                    if let Some(v) = w.strip_prefix(axis) {
                        self.pos[i] = v.parse().unwrap_or(self.pos[i]);
                    }
                }
            }
            if let Some(p) = dwell_s {
                // grbl answers a G4 only when the dwell is over; nothing else runs meanwhile.
                self.dwell_ok_at = Some(now + Duration::from_secs_f64(p));
                return;
            }
            self.out.extend_from_slice(b"ok\r\n");
        }
    }
}

#[test]
fn golden_transcript_against_a_scripted_controller() {
    let c = smp_testkit::synthetic_case(2);
    let program = crate::compile::compile(&c.plan, &c.rig, &c.base_from_head).expect("compiles");
    let cfg =
        GrblConfig { wait_for_welcome: true, record_transcript: true, pause_on_error: false, ..GrblConfig::default() };
    let mut host = GrblStreamer::new(cfg);
    for (i, l) in program.lines.iter().enumerate() {
        host.queue_line(&l.text, i as u64).expect("compiled lines are valid");
        if l.text.starts_with("M3 ") {
            host.queue_line("M7", 999).expect("valid line, rejected by grbl");
        }
    }
    let mut ctrl = ScriptedGrbl::new();
    let mut now = Duration::ZERO;
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for step in 0..10_000 {
        if step == 3 {
            host.realtime(Realtime::StatusQuery);
        }
        buf.clear();
        host.poll_transmit(now, &mut buf);
        ctrl.receive(&buf);
        ctrl.tick(now);
        // Replies arrive in 7-byte chunks.
        let take = ctrl.out.len().min(7);
        let chunk: Vec<u8> = ctrl.out.drain(..take).collect();
        host.handle_received(&chunk, now);
        events.extend(std::iter::from_fn(|| host.poll_event()));
        if host.pending() == 0 && ctrl.out.is_empty() && host.welcomed() {
            break;
        }
        now += Duration::from_millis(10);
    }
    assert_eq!(host.pending(), 0, "stream did not finish");
    let accepted: Vec<u64> =
        events.iter().filter_map(|e| if let GrblEvent::Accepted { tag } = e { Some(*tag) } else { None }).collect();
    assert_eq!(accepted, (0..program.lines.len() as u64).collect::<Vec<_>>());
    assert!(events.contains(&GrblEvent::Rejected { tag: 999, code: 20 }));
    let transcript = host.transcript().join("\n");
    if std::env::var_os("SMP_PRINT_GOLDEN").is_some() {
        println!("{transcript}");
    }
    assert_eq!(transcript, GOLDEN.trim(), "transcript changed; if intended, rerun with SMP_PRINT_GOLDEN=1 --nocapture");
}

const GOLDEN: &str = r#"
> ?
< Grbl 1.1h ['$' for help]
> (smp session 1, 2 dots, generated by smp)
> (limits: depth 1.200 mm, feed 3000.000 mm/min)
< <Idle|MPos:0.000,0.000,0.000|FS:0,0>
< ok
> (rig sim-xyz-default, profile xyz, units mm)
> (dialect grbl)
> G21 G90 G94
< ok
> G1 Z275.852 F3000.000
> M3 S9000.000
> M7
< ok
< ok
> G1 X301.080 Y-34.016 Z275.852 F3000.000
> G1 Z227.852 F3000.000
< ok
< ok
> G1 Z224.852 F600.000
> G4 P0.050
< ok
> G1 Z227.852 F1200.000
< error:20
< ok
< ok
> G1 X307.590 Y-30.982 Z228.013 F3000.000
> G1 Z225.526 F3000.000
< ok
> G1 Z222.526 F600.000
> G4 P0.050
< ok
< ok
< ok
> G1 Z225.526 F1200.000
> M5
> G1 Z275.852 F3000.000
> M2
< ok
< ok
< ok
< ok
< ok
< ok
< [MSG:Pgm End]
< ok
"#;
