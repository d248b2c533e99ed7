//! The spindle stop override (0x9E) as grbl 1.1's protocol.c implements it, and the running
//! time in skin that the contact record keeps.

use super::*;
use approx::assert_relative_eq;
use nalgebra::{Isometry3, Translation3};

use super::test_io::{config, controller, dynamics, run_to_quiet, send_bytes, t};

const STOP: &str = "\u{9e}";

fn flat(report_overrides: bool) -> SimController {
    let mut cfg = config();
    cfg.report_wco_and_overrides = report_overrides;
    let head_from_base = Isometry3::from_parts(Translation3::new(-100.0, 0.0, -10.0), Default::default());
    controller(cfg, Box::new(FlatSkin { z_mm: 10.0, head_from_base }))
}

/// Sends `text` with each char as one byte (Latin-1), so that realtime bytes such as
/// 0x9E can be written in a `&str`.
fn send(c: &mut SimController, text: &str, now: f64) -> String {
    let bytes: Vec<u8> = text.chars().map(|ch| ch as u32 as u8).collect();
    send_bytes(c, &bytes, now)
}

/// One dot: plunge 1 mm into the skin at 300 mm/min, dwell 1 s, retract.
const DOT: &str = "M3S12000\nG0X30Y20Z12\nG1Z9F300\nG4P1\nG0Z12\nM5\n";

/// Runs the dot; at `pause_at` (machine time, inside the dwell) sends `!`, then `extra` bytes
/// at each given time, and `~` at `resume_at`. Returns the controller and what it sent.
fn paused_dot(pause_at: f64, extra: &[(f64, &str)], resume_at: f64) -> (SimController, String) {
    let mut c = flat(false);
    let mut out = send(&mut c, DOT, 0.0);
    out.push_str(&send(&mut c, "!", pause_at));
    for (at, bytes) in extra {
        out.push_str(&send(&mut c, bytes, *at));
    }
    out.push_str(&send(&mut c, "~", resume_at));
    out.push_str(&run_to_quiet(&mut c));
    (c, out)
}

#[test]
fn a_paused_dwell_with_the_cartridge_running_shows_as_a_longer_running_time_in_skin() {
    let mut reference = flat(false);
    send(&mut reference, DOT, 0.0);
    run_to_quiet(&mut reference);
    let base = reference.entry_timing()[0];
    // In the skin: 1 mm down at 5 mm/s, the 1 s dwell, and a rapid retract.
    assert!(base.in_skin_s > 1.2 && base.in_skin_s < 1.3, "{base:?}");
    assert_relative_eq!(base.running_in_skin_s, base.in_skin_s, epsilon = 1e-9);
    let dwell_start = reference.entries()[0].time_s + 0.2 + 0.0025;

    // Held 2 s mid-dwell without stopping the cartridge: 2 s more running in skin.
    let (c, _) = paused_dot(dwell_start + 0.5, &[], dwell_start + 2.5);
    let held = c.entry_timing()[0];
    assert_relative_eq!(held.in_skin_s, base.in_skin_s + 2.0, epsilon = 1e-6);
    assert_relative_eq!(held.running_in_skin_s, base.running_in_skin_s + 2.0, epsilon = 1e-6);

    // With the spindle stop 0.1 s into the hold, only those 0.1 s add to the running time.
    let (c, out) = paused_dot(dwell_start + 0.5, &[(dwell_start + 0.6, STOP)], dwell_start + 2.5);
    let stopped = c.entry_timing()[0];
    assert_relative_eq!(stopped.in_skin_s, base.in_skin_s + 2.0, epsilon = 1e-6);
    assert_relative_eq!(stopped.running_in_skin_s, base.running_in_skin_s + 0.1, epsilon = 1e-6);
    assert_eq!(out.matches("[MSG:Restoring spindle]").count(), 1, "{out}");
    assert_eq!(c.entries().len(), 1);
    assert!(c.unpowered_contacts().is_empty());
    assert!(!c.cartridge_running(), "M5 at the end");
}

#[test]
fn the_deposit_dwell_adds_only_the_extra_running_time_of_a_paused_dot() {
    // Three dots, the middle one held 2 s with the cartridge running.
    let mut report = SimReport::default();
    for (i, running) in [1.25, 3.25, 1.25].into_iter().enumerate() {
        report.entries.push(NeedleEntry {
            base_mm: [i as f64, 0.0, 0.0],
            head_mm: [0.0; 3],
            depth_mm: 1.0,
            time_s: 0.0,
        });
        report.entry_timing.push(EntryTiming { exit_time_s: 0.0, in_skin_s: running, running_in_skin_s: running });
    }
    let dwell = report.deposit_dwell_s(1.0);
    assert_eq!(dwell.len(), 3);
    assert_relative_eq!(dwell[0], 1.0);
    assert_relative_eq!(dwell[1], 3.0);
    assert_relative_eq!(dwell[2], 1.0);
    let inputs = report.deposit_inputs(1.0, 2, 40.0);
    assert_eq!(inputs[1].session, 2);
    assert_relative_eq!(inputs[1].dwell_s, 3.0);
    // Without timing records (an older report): the session's dwell.
    report.entry_timing.clear();
    assert_eq!(report.deposit_dwell_s(0.1), vec![0.1; 3]);
}

#[test]
fn spindle_stop_is_taken_only_in_hold_and_acts_once_the_hold_is_complete() {
    let mut c = flat(true);
    send(&mut c, "?", 0.0);
    send(&mut c, "?", 0.0);
    send(&mut c, "M3S12000\nG1F1200X50\n", 0.0);
    // Running: ignored.
    send(&mut c, STOP, 0.3);
    assert!(c.cartridge_running());
    send(&mut c, "!", 0.5);
    assert!(send(&mut c, "?", 0.505).starts_with("<Hold:1|"));
    // Asked during Hold:1: the spindle still runs until the machine has stopped.
    send(&mut c, STOP, 0.506);
    assert!(c.cartridge_running(), "acted on only once the hold is complete");
    run_to_quiet(&mut c);
    assert_eq!(c.state(), MachineState::Hold { complete: true });
    assert!(!c.cartridge_running());
    // The next report shows speed 0, the overrides at once, and no `A:S`.
    let out = send(&mut c, "?", 1.0);
    assert!(out.starts_with("<Hold:0|"), "{out}");
    assert!(out.contains("|FS:0,0|Ov:100,100,100>"), "{out}");
    // A second 0x9E restores the spindle without resuming.
    let out = send(&mut c, STOP, 1.1);
    assert_eq!(out, "[MSG:Restoring spindle]\r\n");
    assert!(c.cartridge_running());
    assert_eq!(c.state(), MachineState::Hold { complete: true });
    let out = send(&mut c, "?", 1.2);
    assert!(out.contains("|FS:0,12000|Ov:100,100,100|A:S>"), "{out}");
    // Stop again, then cycle start: restore first, then resume the move.
    send(&mut c, STOP, 1.3);
    assert!(!c.cartridge_running());
    let out = send(&mut c, "~", 1.4);
    assert_eq!(out, "[MSG:Restoring spindle]\r\n");
    assert!(c.cartridge_running());
    assert_eq!(c.state(), MachineState::Run);
    run_to_quiet(&mut c);
    assert_eq!(c.position_mm(), [50.0, 0.0, 50.0]);
    // A soft reset clears a stop in force: the spindle is off and stays off.
    let mut c = flat(false);
    send(&mut c, "M3S12000\n!", 0.0);
    send(&mut c, STOP, 0.1);
    send_bytes(&mut c, &[0x18], 0.2);
    assert!(send(&mut c, "~", 0.3).is_empty());
    assert!(!c.cartridge_running());
}

#[test]
fn spindle_stop_with_the_spindle_off_clears_itself_and_cycle_start_just_resumes() {
    let mut c = flat(false);
    send(&mut c, "G1F1200X10\n", 0.0);
    send(&mut c, "!", 0.2);
    run_to_quiet(&mut c);
    send(&mut c, STOP, 1.0);
    let out = send(&mut c, "~", 1.1);
    assert!(out.is_empty(), "no restore message when nothing was stopped: {out:?}");
    assert_eq!(c.state(), MachineState::Run);
}

#[test]
fn a_feed_override_fault_shows_in_the_next_ov_field_and_scales_later_moves() {
    let mut cfg = ControllerConfig::new(dynamics());
    cfg.initial_position_mm = [0.0, 0.0, 50.0];
    cfg.faults.faults = vec![Fault::FeedRateAtTime { time_s: 1.0, percent: 120 }];
    let mut c = match SimController::new(cfg, Box::new(NoSkin)) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    send(&mut c, "?", 0.0);
    send(&mut c, "?", 0.0);
    assert_eq!(send(&mut c, "?", 0.5), "<Idle|MPos:0.000,0.000,50.000|FS:0,0>\r\n");
    let out = send(&mut c, "?", 1.5);
    assert!(out.contains("|Ov:120,100,100"), "reported at once: {out}");
    // 12 mm at F600 and 120 %: 1 s (plus the ramps).
    send(&mut c, "G1X12F600\n", 2.0);
    c.handle_timeout(t(2.95));
    assert_eq!(c.state(), MachineState::Run);
    c.handle_timeout(t(3.05));
    assert_eq!(c.state(), MachineState::Idle);
    send_bytes(&mut c, &[0x18], 4.0);
    assert_eq!(c.feed_rate_percent(), 100, "a soft reset restores the overrides");
    let bad = Fault::FeedRateAtTime { time_s: 1.0, percent: 0 };
    assert!(FaultPlan { faults: vec![bad] }.validate("test").is_err());
}
