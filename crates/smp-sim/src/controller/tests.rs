//! Tests of the pure controller: protocol, timing, alarms and needle entries.

use super::*;
use approx::assert_relative_eq;
use nalgebra::{Isometry3, Translation3};
use proptest::prelude::*;
use smp_core::kinematics::{trapezoid_time_s, AxisLimits, MachineDynamics};

use super::test_io::{config, controller, run_to_quiet, send, t, take};

fn plain() -> SimController {
    controller(config(), Box::new(NoSkin))
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn banner_at_power_up_and_blank_lines_ok() {
    let mut c = plain();
    assert_eq!(take(&mut c), "\r\nGrbl 1.1h ['$' for help]\r\n");
    assert_eq!(send(&mut c, "\n(comment only)\n; another\n   \n", 0.0), "ok\r\nok\r\nok\r\nok\r\n");
}

#[test]
fn planner_full_holds_the_ok_until_a_block_completes() {
    let mut c = plain();
    take(&mut c);
    // 17 one-millimetre moves: 15 fit the planner (the executing one included).
    let mut text = String::from("G1F6000X1\n");
    for k in 2..=17 {
        text.push_str(&format!("X{k}\n"));
    }
    assert!(text.len() <= 128);
    let out = send(&mut c, &text, 0.0);
    assert_eq!(count(&out, "ok"), 15, "{out}");
    // The first block (1 mm, triangle profile) ends at 2*sqrt(1/1000) s: room for one more.
    let first_end = trapezoid_time_s(1.0, 100.0, 1000.0);
    assert_eq!(c.poll_timeout(), Some(Duration::from_nanos((first_end * 1e9).ceil() as u64)));
    c.handle_timeout(t(first_end - 1e-4));
    assert_eq!(take(&mut c), "");
    c.handle_timeout(t(first_end + 1e-6));
    assert_eq!(take(&mut c), "ok\r\n");
    let rest = run_to_quiet(&mut c);
    assert_eq!(count(&rest, "ok"), 1);
    assert_relative_eq!(c.machine_time_s(), 17.0 * first_end, epsilon = 1e-6);
    assert_eq!(c.position_mm(), [17.0, 0.0, 50.0]);
    assert_eq!(c.stats().flow_violations, 0);
}

#[test]
fn g4_is_acknowledged_only_after_the_drain_and_the_dwell() {
    let mut c = plain();
    take(&mut c);
    let out = send(&mut c, "G1F600Z40\nG4P0.5\nG4P0.12\n", 0.0);
    assert_eq!(out, "ok\r\n", "the move is acknowledged when queued, the dwell is not");
    let move_s = trapezoid_time_s(10.0, 10.0, 1000.0);
    c.handle_timeout(t(move_s + 0.5 - 1e-3));
    assert_eq!(take(&mut c), "", "no ok before the plunge and the dwell are done");
    c.handle_timeout(t(move_s + 0.5 + 1e-6));
    assert_eq!(take(&mut c), "ok\r\n");
    // 0.12 s is rounded up to grbl's 50 ms dwell step: 0.15 s.
    c.handle_timeout(t(move_s + 0.5 + 0.149));
    assert_eq!(take(&mut c), "");
    c.handle_timeout(t(move_s + 0.5 + 0.151));
    assert_eq!(take(&mut c), "ok\r\n");
}

#[test]
fn soft_limit_raises_alarm_2_and_locks_until_reset_and_unlock() {
    let mut c = plain();
    take(&mut c);
    let out = send(&mut c, "G0X500\n", 0.0);
    assert_eq!(out, "ALARM:2\r\n[MSG:Reset to continue]\r\n", "the offending line gets no response");
    assert_eq!(c.state(), MachineState::Alarm);
    assert_eq!(send(&mut c, "G0X1\n$$\n", 0.1), "", "everything but status and reset is blocked");
    assert!(send(&mut c, "?", 0.1).starts_with("<Alarm|MPos:0.000,0.000,50.000|"));
    // grbl's soft-limit check returns into `gc_execute_line` once the reset sets `sys.abort`,
    // and the offending line's `ok` is printed before the banner.
    let out = send(&mut c, "\x18", 0.2);
    assert_eq!(out, format!("ok\r\n{GRBL_BANNER}[MSG:'$H'|'$X' to unlock]\r\n"));
    assert_eq!(send(&mut c, "G0X1\n", 0.3), "error:9\r\n");
    assert_eq!(send(&mut c, "$X\n", 0.3), "[MSG:Caution: Unlocked]\r\nok\r\n");
    assert_eq!(send(&mut c, "G0X1\n", 0.3), "ok\r\n");
    assert_eq!(c.stats().alarms, vec![codes::ALARM_SOFT_LIMIT]);
}

#[test]
fn soft_limit_while_moving_stops_under_control_first() {
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "G1F3000X100\n", 0.0), "ok\r\n");
    // At 1 s the tool cruises at 50 mm/s near X 48.75; the violation starts a hold.
    let out = send(&mut c, "G0Y300\n", 1.0);
    assert_eq!(out, "");
    assert_eq!(c.state(), MachineState::Hold { complete: false });
    let out = run_to_quiet(&mut c);
    assert_eq!(out, "ALARM:2\r\n[MSG:Reset to continue]\r\n");
    // 50 mm/s to rest at 1000 mm/s²: 1.25 mm further.
    let x = c.position_mm()[0];
    assert_relative_eq!(x, 48.75 + 1.25, epsilon = 0.004);
    assert!(c.poll_timeout().is_none());
}

/// grbl 1.1h (protocol.c, motion_control.c, gcode.c): a dwell waiting for the planner in
/// `protocol_buffer_synchronize`, or counting down in `delay_sec`, returns on `sys.abort`;
/// `gc_execute_line` still returns `STATUS_OK`, so the interrupted line is answered `ok` after
/// the reset's `ALARM:3` (when in motion) and before the banner. A host that takes that `ok`
/// for "the dwell ran" journals a dot executed whose needle never reached depth (issue 20).
#[test]
fn a_reset_answers_the_interrupted_dwell_ok_before_the_banner_as_grbl_does() {
    // The dwell counting down, the tip at rest: no alarm.
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "G4P2\n", 0.0), "");
    assert!(c.dwelling());
    assert_eq!(send(&mut c, "\x18", 0.5), format!("ok\r\n{GRBL_BANNER}"));
    assert!(!c.dwelling());
    assert_eq!(c.stats().oks_after_reset, 1);

    // The dwell waiting behind a plunge held by `!`: the hold completes, then the reset.
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "G1F600Z10\nG4P0.1\n", 0.0), "ok\r\n", "the dwell waits for the plunge");
    assert_eq!(send(&mut c, "!", 1.0), "");
    run_to_quiet(&mut c);
    assert_eq!(c.state(), MachineState::Hold { complete: true });
    let z_held = c.position_mm()[2];
    assert!(z_held > 35.0, "held 4 s of plunge short of the bottom: Z {z_held}");
    assert_eq!(send(&mut c, "\x18", 3.0), format!("ok\r\n{GRBL_BANNER}"), "a complete hold keeps position: no alarm");
    assert_eq!(c.state(), MachineState::Idle);
    assert_relative_eq!(c.position_mm()[2], z_held, epsilon = 0.5 / 250.0 + 1e-9);

    // The plunge still moving: ALARM:3 first, then the dwell's `ok`, then the banner.
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "G1F600Z10\nG4P0.1\n", 0.0), "ok\r\n");
    let out = send(&mut c, "\x18", 1.0);
    assert_eq!(out, format!("ALARM:3\r\nok\r\n{GRBL_BANNER}[MSG:'$H'|'$X' to unlock]\r\n"));
    // Lines between the reset and nothing: the main loop is idle, so no extra `ok`.
    run_to_quiet(&mut c);
    assert_eq!(send(&mut c, "\x18", 5.0), format!("{GRBL_BANNER}[MSG:'$H'|'$X' to unlock]\r\n"));
    assert_eq!(c.stats().oks_after_reset, 1);
}

#[test]
fn soft_reset_mid_move_flushes_raises_alarm_3_and_keeps_position() {
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "G1F600X100\nG1X0\n", 0.0), "ok\r\nok\r\n");
    let at = c.position_mm();
    let out = send(&mut c, "G1X5", 2.0); // a partial line in the buffer, flushed by the reset
    assert_eq!(out, "");
    let before = c.position_mm();
    assert!(before[0] > at[0]);
    let out = send(&mut c, "\x18", 2.0);
    assert_eq!(out, format!("ALARM:3\r\n{GRBL_BANNER}[MSG:'$H'|'$X' to unlock]\r\n"));
    assert!(c.poll_timeout().is_none(), "planner flushed, motion stopped");
    // Kept, rounded to the nearest whole step (1/250 mm).
    assert_relative_eq!(c.position_mm()[0], before[0], epsilon = 0.5 / 250.0 + 1e-9);
    assert_eq!(c.state(), MachineState::Alarm);
    assert_eq!(send(&mut c, "\n", 2.1), "ok\r\n", "the partial line was flushed");
    assert_eq!(send(&mut c, "$X\nG0X0\n", 2.1), "[MSG:Caution: Unlocked]\r\nok\r\nok\r\n");
    // A reset while idle: banner only, no alarm.
    run_to_quiet(&mut c);
    let out = send(&mut c, "\x18", 10.0);
    assert_eq!(out, GRBL_BANNER);
    assert_eq!(c.state(), MachineState::Idle);
    assert_eq!(c.stats().alarms, vec![codes::ALARM_ABORT_CYCLE]);
}

#[test]
fn rx_overflow_is_counted_and_a_counting_host_never_overflows() {
    let mut c = plain();
    take(&mut c);
    // While the G4 blocks the main loop, an unchecked host pushes 200 more bytes.
    assert_eq!(send(&mut c, "G4P10\n", 0.0), "");
    let junk = "X".repeat(200);
    send(&mut c, &junk, 0.1);
    assert_eq!(c.stats().rx_overflows, 200 - 128);
    assert!(c.stats().flow_violations > 0);
    assert_eq!(c.stats().rx_high_water_bytes, 128);

    // A host that keeps at most 128 unacknowledged bytes: no overflow, no violation.
    let mut c = plain();
    take(&mut c);
    let lines: Vec<String> = (0..60).map(|k| format!("G1F3000X{}Y{}\n", k % 7 + 1, k % 5 + 1)).collect();
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let mut next = 0;
    let mut now = 0.0;
    let mut oks = 0;
    while oks < lines.len() {
        while next < lines.len() && in_flight.iter().sum::<usize>() + lines[next].len() <= 128 {
            c.handle_bytes(lines[next].as_bytes(), t(now));
            in_flight.push_back(lines[next].len());
            next += 1;
        }
        let out = take(&mut c);
        for _ in 0..count(&out, "ok") {
            in_flight.pop_front();
            oks += 1;
        }
        now = c.poll_timeout().map_or(now + 0.01, |d| d.as_secs_f64());
        c.handle_timeout(t(now));
        let out = take(&mut c);
        for _ in 0..count(&out, "ok") {
            in_flight.pop_front();
            oks += 1;
        }
    }
    assert_eq!(c.stats().rx_overflows, 0);
    assert_eq!(c.stats().flow_violations, 0);
    assert_eq!(c.stats().oks_sent, 60);
}

#[test]
fn status_report_format() {
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "?", 0.0), "<Idle|MPos:0.000,0.000,50.000|FS:0,0>\r\n");
    send(&mut c, "M3S12000\nG1F1200X10\n", 0.0);
    // 20 mm/s reached after 0.02 s; cruising at 0.5 s.
    let out = send(&mut c, "?", 0.5);
    assert_eq!(out, "<Run|MPos:9.800,0.000,50.000|FS:1200,12000>\r\n");
    send(&mut c, "!", 0.505);
    assert!(send(&mut c, "?", 0.51).starts_with("<Hold:1|"));
    let out = send(&mut c, "?", 1.0);
    assert!(out.starts_with("<Hold:0|MPos:"), "{out}");
    assert!(out.ends_with("|FS:0,12000>\r\n"), "{out}");

    // grbl 1.1h's refresh counters: WCO on the first report, Ov on the next, then neither.
    let mut cfg = config();
    cfg.report_wco_and_overrides = true;
    let mut c = controller(cfg, Box::new(NoSkin));
    take(&mut c);
    assert_eq!(send(&mut c, "?", 0.0), "<Idle|MPos:0.000,0.000,50.000|FS:0,0|WCO:0.000,0.000,0.000>\r\n");
    assert_eq!(send(&mut c, "?", 0.0), "<Idle|MPos:0.000,0.000,50.000|FS:0,0|Ov:100,100,100>\r\n");
    assert_eq!(send(&mut c, "?", 0.0), "<Idle|MPos:0.000,0.000,50.000|FS:0,0>\r\n");
    // $10=3 adds the buffer state.
    assert_eq!(send(&mut c, "$10=3\n", 0.0), "ok\r\n");
    let out = send(&mut c, "?", 0.0);
    assert!(out.contains("|Bf:15,128|"), "{out}");
}

#[test]
fn feed_hold_and_cycle_start_resume_the_move() {
    let mut c = plain();
    take(&mut c);
    send(&mut c, "G1F1200X10\n", 0.0);
    send(&mut c, "!", 0.2);
    run_to_quiet(&mut c);
    assert_eq!(c.state(), MachineState::Hold { complete: true });
    let held = c.position_mm()[0];
    assert!(held > 3.0 && held < 5.0, "{held}");
    assert_eq!(send(&mut c, "G1X0\n", 1.0), "", "no line is read during a hold");
    assert_eq!(send(&mut c, "~", 2.0), "ok\r\n", "resumed: the waiting line is read and queued");
    assert_eq!(c.state(), MachineState::Run);
    assert_eq!(run_to_quiet(&mut c), "");
    assert_eq!(c.position_mm(), [0.0, 0.0, 50.0]);
}

fn flat_skin_controller(z_mm: f64) -> SimController {
    let head_from_base = Isometry3::from_parts(Translation3::new(-100.0, 0.0, -10.0), Default::default());
    controller(config(), Box::new(FlatSkin { z_mm, head_from_base }))
}

#[test]
fn plunge_through_flat_skin_records_one_entry_with_depth_and_position() {
    let mut c = flat_skin_controller(10.0);
    take(&mut c);
    let prog = "M3S12000\nG0X30.5Y20.2Z12\nG1Z9F300\nG4P0.1\nG0Z12\nM5\n";
    send(&mut c, prog, 0.0);
    run_to_quiet(&mut c);
    assert!(c.unpowered_contacts().is_empty());
    let e = c.entries();
    assert_eq!(e.len(), 1);
    assert_relative_eq!(e[0].depth_mm, 1.0, epsilon = 1e-6);
    assert_relative_eq!(e[0].base_mm[0], 30.5, epsilon = 1e-9);
    assert_relative_eq!(e[0].base_mm[1], 20.2, epsilon = 1e-9);
    assert_relative_eq!(e[0].base_mm[2], 10.0, epsilon = 1e-6);
    assert_relative_eq!(e[0].head_mm[0], -69.5, epsilon = 1e-9);
    assert_relative_eq!(e[0].head_mm[2], 0.0, epsilon = 1e-6);
    // The tip crosses the surface 2 mm into the plunge (5 mm/s after a 0.005 s ramp).
    let rapid_s = {
        let d = [30.5, 20.2, -38.0];
        c.config().dynamics.move_time_s(d, None)
    };
    let cross_s = rapid_s + 2.0 / 5.0 + 0.0025;
    assert_relative_eq!(e[0].time_s, cross_s, epsilon = 1e-6);
}

#[test]
fn contact_with_the_cartridge_off_is_an_unpowered_contact() {
    let mut c = flat_skin_controller(10.0);
    take(&mut c);
    send(&mut c, "G0X5Y5Z12\nG1Z9.5F300\nG0Z12\nM3S0\nG1Z9.5\nG0Z12\n", 0.0);
    run_to_quiet(&mut c);
    assert!(c.entries().is_empty());
    assert_eq!(c.unpowered_contacts().len(), 2, "M5 and M3 S0 both leave the needle still");
    assert_relative_eq!(c.unpowered_contacts()[0].depth_mm, 0.5, epsilon = 1e-6);
}

#[test]
fn contact_still_open_is_closed_by_finish() {
    let mut c = flat_skin_controller(10.0);
    take(&mut c);
    send(&mut c, "M3S1000\nG0X5Y5Z12\nG1Z9.2F300\n", 0.0);
    run_to_quiet(&mut c);
    assert!(c.entries().is_empty());
    let report = c.finish(t(100.0));
    assert_eq!(report.entries.len(), 1);
    assert_relative_eq!(report.entries[0].depth_mm, 0.8, epsilon = 1e-6);
    assert_relative_eq!(report.machine_time_s, 100.0);
}

#[test]
fn garbage_never_panics_and_follows_grbl() {
    let mut c = plain();
    take(&mut c);
    // NUL and control bytes are dropped, bytes above 0x7F never reach the buffer.
    let out = send(&mut c, "g1\0 x1\u{e9} f100\n", 0.0);
    assert_eq!(out, "ok\r\n");
    let long = format!("G1X{}\n", "1".repeat(90));
    assert_eq!(send(&mut c, &long, 0.0), "error:11\r\n");
    // 79 kept characters are fine, 80 are not (spaces are not kept).
    let longest = format!("G0 X{}\n", "0".repeat(76));
    assert_eq!(send(&mut c, &longest, 0.0), "ok\r\n");
    let too_long = format!("G0X{}\n", "0".repeat(77));
    assert_eq!(send(&mut c, &too_long, 0.0), "error:11\r\n");
    assert_eq!(send(&mut c, "G0X1.2.3\n", 0.0), "error:1\r\n");
    assert_eq!(send(&mut c, "G0X\n", 0.0), "error:2\r\n");
    assert_eq!(send(&mut c, "G2X1Y1I1\n", 0.0), "error:20\r\n");
    // CR and LF both end a line, as in grbl: CRLF gives two answers.
    assert_eq!(send(&mut c, "G0Y1\r\n", 0.0), "ok\r\nok\r\n");
    let mut bytes: Vec<u8> = (0u8..=255).collect();
    bytes.retain(|b| *b != 0x18);
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n', b'(', b'\n']);
    c.handle_bytes(&bytes, t(0.5));
    run_to_quiet(&mut c);
    assert!(c.stats().errors_sent >= 4);
}

#[test]
fn settings_build_info_and_parser_state() {
    let mut c = plain();
    take(&mut c);
    let out = send(&mut c, "$$\n", 0.0);
    assert!(out.starts_with("$0=10\r\n$1=25\r\n"), "{out}");
    assert!(out.contains("$20=1\r\n"));
    assert!(out.contains("$30=30000\r\n"));
    assert!(out.contains("$110=6000.000\r\n$111=6000.000\r\n$112=6000.000\r\n"));
    assert!(out.contains("$120=1000.000\r\n"));
    assert!(out.contains("$130=200.000\r\n$131=200.000\r\n$132=100.000\r\nok\r\n"));
    assert_eq!(send(&mut c, "$I\n", 0.0), "[VER:1.1h.20190825:]\r\n[OPT:V,15,128]\r\nok\r\n");
    assert_eq!(send(&mut c, "$G\n", 0.0), "[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]\r\nok\r\n");
    assert_eq!(send(&mut c, "$H\n", 0.0), "error:5\r\n");
    assert_eq!(send(&mut c, "$999=1\n", 0.0), "error:3\r\n");
    assert_eq!(send(&mut c, "$110=-1\n", 0.0), "error:4\r\n");
    assert_eq!(send(&mut c, "$Q\n", 0.0), "error:2\r\n");
    // A slower X rate changes the dynamics the moves use.
    assert_eq!(send(&mut c, "$110=600\n", 0.0), "ok\r\n");
    send(&mut c, "G0X10\n", 0.0);
    run_to_quiet(&mut c);
    assert_relative_eq!(c.machine_time_s(), trapezoid_time_s(10.0, 10.0, 1000.0), epsilon = 1e-6);
    // $$ is refused while moving.
    send(&mut c, "G0X20\n", 10.0);
    assert_eq!(send(&mut c, "$$\n", 10.1), "error:8\r\n");
}

#[test]
fn check_mode_parses_without_moving() {
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "$C\n", 0.0), "[MSG:Enabled]\r\nok\r\n");
    assert_eq!(send(&mut c, "G1F100X50\nG4P5\nM3S100\n", 0.0), "ok\r\nok\r\nok\r\n");
    assert!(c.poll_timeout().is_none());
    assert_eq!(c.position_mm(), [0.0, 0.0, 50.0]);
    assert_eq!(send(&mut c, "$C\n", 0.0), format!("[MSG:Disabled]\r\nok\r\n{GRBL_BANNER}"));
    assert_eq!(c.state(), MachineState::Idle);
}

#[test]
fn program_pause_and_end() {
    let mut c = plain();
    take(&mut c);
    assert_eq!(send(&mut c, "M3S100\nM0\n", 0.0), "ok\r\n");
    assert_eq!(c.state(), MachineState::Hold { complete: true });
    assert_eq!(send(&mut c, "~", 1.0), "ok\r\n");
    assert_eq!(send(&mut c, "M2\n", 1.0), "[MSG:Pgm End]\r\nok\r\n");
    assert!(send(&mut c, "?", 1.0).contains("FS:0,0"));
}

#[test]
fn fault_reset_before_line_loses_the_line() {
    let mut cfg = config();
    cfg.faults = FaultPlan { faults: vec![Fault::ResetBeforeLine { line: 3 }] };
    let mut c = controller(cfg, Box::new(NoSkin));
    take(&mut c);
    let out = send(&mut c, "G1F600X10\nG1X20\nG1X30\nG1X40\n", 0.5);
    // Lines 1 and 2 acknowledged; line 3 is lost to a reset while moving; line 4, arriving
    // after the reset, meets the alarm lock.
    assert_eq!(out, format!("ok\r\nok\r\nALARM:3\r\n{GRBL_BANNER}[MSG:'$H'|'$X' to unlock]\r\nerror:9\r\n"));
    assert_eq!(c.report().faults_fired, vec![FiredFault { fault: 0, time_s: 0.5 }]);
    assert!(c.poll_timeout().is_none());
}

#[test]
fn faults_parse_from_toml() {
    let plan: FaultPlan = match toml::from_str(
        "[[faults]]\nkind = \"reset_before_line\"\nline = 120\n[[faults]]\nkind = \"corrupt_byte\"\nindex = 7\nxor = 32\n",
    ) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(plan.faults, vec![Fault::ResetBeforeLine { line: 120 }, Fault::CorruptByte { index: 7, xor: 32 }]);
}

#[test]
fn config_validation_names_the_field() {
    let mut cfg = config();
    cfg.initial_position_mm = [0.0, 0.0, 500.0];
    let err = SimController::new(cfg, Box::new(NoSkin)).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("initial_position_mm"), "{err}");
    let mut cfg = config();
    cfg.time_scale = 0.0;
    assert!(SimController::new(cfg, Box::new(NoSkin)).is_err());
    assert!(ControllerConfig::default().validate().is_ok());
}

/// A byte stream exercising the protocol: moves, dwells, spindle, status, errors, comments.
const STREAM: &str = "G21 G90 G94\nM3 S1000\nG1 F3000 X10 Y5 Z40 (approach)\nG1 Z35 F600\nG4 P0.1\n?\
G0 Z45\nG1 X12 Y7 F3000 ; next\nG1 Z30\nG4 P0.05\nG0 Z45\nBOGUS\n?$G\nG2 X1\nM5\nG0 X0 Y0\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The replies depend on the bytes and their times only, never on how reads chunk them.
    #[test]
    fn chunking_does_not_change_the_replies(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..40)) {
        // Bytes arrive in three time slots (so motion runs between them); within a slot the
        // chunking is random.
        let bytes = STREAM.as_bytes();
        let slots = [(0usize, 40usize, 0.0f64), (40, 110, 0.3), (110, bytes.len(), 0.9)];
        let reference = {
            let mut c = flat_skin_controller(38.0);
            let mut out = take(&mut c);
            for &(a, b, at) in &slots {
                c.handle_timeout(t(at));
                out.push_str(&take(&mut c));
                c.handle_bytes(&bytes[a..b], t(at));
                out.push_str(&take(&mut c));
            }
            out.push_str(&run_to_quiet(&mut c));
            (out, c.report())
        };
        let mut c = flat_skin_controller(38.0);
        let mut out = take(&mut c);
        let mut cuts = cuts;
        cuts.sort_unstable();
        for &(a, b, at) in &slots {
            c.handle_timeout(t(at));
            out.push_str(&take(&mut c));
            let mut start = a;
            for &cut in cuts.iter().filter(|&&k| k > a && k < b) {
                c.handle_bytes(&bytes[start..cut], t(at));
                out.push_str(&take(&mut c));
                start = cut;
            }
            c.handle_bytes(&bytes[start..b], t(at));
            out.push_str(&take(&mut c));
        }
        out.push_str(&run_to_quiet(&mut c));
        prop_assert_eq!(&out, &reference.0);
        prop_assert_eq!(c.report(), reference.1);
    }
}

/// Rest-to-rest move time computed here from first principles, independently of
/// `smp_core::kinematics`: each axis' share of the path must respect its own rate and
/// acceleration; the move cruises if it is long enough to reach speed, else it is a triangle.
fn analytic_move_time_s(axes: &[(f64, f64); 3], delta: [f64; 3], feed_mm_per_min: f64) -> f64 {
    let d = (delta[0].powi(2) + delta[1].powi(2) + delta[2].powi(2)).sqrt();
    let mut v = feed_mm_per_min / 60.0;
    let mut a = f64::INFINITY;
    for (i, &(rate_mm_per_min, accel)) in axes.iter().enumerate() {
        let u = delta[i].abs() / d;
        if u > 0.0 {
            v = v.min(rate_mm_per_min / 60.0 / u);
            a = a.min(accel / u);
        }
    }
    let t_ramp = v / a; // time to reach cruise speed
    let d_ramps = v * t_ramp; // distance of the ramp up plus the ramp down
    if d >= d_ramps {
        2.0 * t_ramp + (d - d_ramps) / v
    } else {
        // Triangle: d/2 = a t² / 2 on each side.
        2.0 * (d / a).sqrt()
    }
}

#[test]
fn motion_time_matches_the_analytic_trapezoid_within_1_percent() {
    // Different limits per axis, so that multi-axis moves are limited by the slowest share.
    let axes = [(6000.0, 1000.0), (3000.0, 500.0), (1200.0, 200.0)];
    let lim = |(rate, acc): (f64, f64), max| AxisLimits {
        max_rate_mm_per_min: rate,
        accel_mm_per_s2: acc,
        min_mm: 0.0,
        max_mm: max,
    };
    let mut cfg = config();
    cfg.dynamics = MachineDynamics { x: lim(axes[0], 200.0), y: lim(axes[1], 200.0), z: lim(axes[2], 100.0) };
    // (start, end, feed): targets on the 1/250 mm step grid so step rounding is exact.
    let cases: [([f64; 3], [f64; 3], f64, &str); 6] = [
        ([0.0, 0.0, 50.0], [1.0, 0.0, 50.0], 6000.0, "short triangle on X (needs 10 mm to cruise)"),
        ([0.0, 0.0, 50.0], [150.0, 0.0, 50.0], 3000.0, "long trapezoid on X"),
        ([0.0, 0.0, 50.0], [0.0, 0.0, 20.0], 6000.0, "Z limited by its own rate"),
        ([0.0, 0.0, 50.0], [100.0, 50.0, 20.0], 6000.0, "three axes, slowest share wins"),
        ([10.0, 10.0, 50.0], [10.4, 10.2, 49.8], 2000.0, "short multi-axis triangle"),
        ([0.0, 0.0, 50.0], [180.0, 120.0, 50.0], 600.0, "slow feed, long cruise"),
    ];
    for (start, end, feed, what) in cases {
        let mut cfg = cfg.clone();
        cfg.initial_position_mm = start;
        let mut c = controller(cfg, Box::new(NoSkin));
        take(&mut c);
        let line = format!("G1 F{feed} X{} Y{} Z{}\n", end[0], end[1], end[2]);
        assert_eq!(send(&mut c, &line, 0.0), "ok\r\n", "{what}");
        run_to_quiet(&mut c);
        let delta = [end[0] - start[0], end[1] - start[1], end[2] - start[2]];
        let expected = analytic_move_time_s(&axes, delta, feed);
        let got = c.machine_time_s();
        assert!((got - expected).abs() <= 0.01 * expected, "{what}: controller {got} s, analytic {expected} s");
        assert_eq!(c.position_mm(), end, "{what}");
    }
    // A rapid (G0) runs at the axes' maximum: X alone at 100 mm/s, 1000 mm/s².
    let mut c = controller(cfg.clone(), Box::new(NoSkin));
    take(&mut c);
    send(&mut c, "G0 X120\n", 0.0);
    run_to_quiet(&mut c);
    let expected = analytic_move_time_s(&axes, [120.0, 0.0, 0.0], f64::INFINITY);
    assert!((c.machine_time_s() - expected).abs() <= 0.01 * expected, "{} vs {expected}", c.machine_time_s());
    // A program of moves takes the sum of their times (every block starts and ends at rest).
    let mut c = controller(cfg, Box::new(NoSkin));
    take(&mut c);
    send(&mut c, "G1 F6000 X1\nX21\nY5 Z45\nX0 Y0 Z50\n", 0.0);
    run_to_quiet(&mut c);
    let expected = analytic_move_time_s(&axes, [1.0, 0.0, 0.0], 6000.0)
        + analytic_move_time_s(&axes, [20.0, 0.0, 0.0], 6000.0)
        + analytic_move_time_s(&axes, [0.0, 5.0, -5.0], 6000.0)
        + analytic_move_time_s(&axes, [-21.0, -5.0, 5.0], 6000.0);
    assert!((c.machine_time_s() - expected).abs() <= 0.01 * expected, "{} vs {expected}", c.machine_time_s());
}

/// One line of controller output, checked against the grbl 1.1 interface description
/// (github.com/gnea/grbl/wiki/Grbl-v1.1-Interface, "Grbl Response Messages" and "Push
/// Messages"). Returns the message class, or panics naming the malformed line.
fn grbl_class(line: &str) -> &'static str {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let decimal3 = |s: &str| {
        let s = s.strip_prefix('-').unwrap_or(s);
        match s.split_once('.') {
            Some((i, f)) => digits(i) && f.len() == 3 && digits(f),
            None => false,
        }
    };
    if line == "ok" {
        return "ok";
    }
    if let Some(n) = line.strip_prefix("error:") {
        assert!(digits(n) && (1..=38).contains(&n.parse::<u32>().unwrap_or(0)), "bad error line {line:?}");
        return "error";
    }
    if let Some(n) = line.strip_prefix("ALARM:") {
        assert!(digits(n) && (1..=9).contains(&n.parse::<u32>().unwrap_or(0)), "bad alarm line {line:?}");
        return "alarm";
    }
    if line == "Grbl 1.1h ['$' for help]" {
        return "welcome";
    }
    if let Some(body) = line.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
        let mut fields = body.split('|');
        let state = fields.next().unwrap_or_default();
        assert!(
            ["Idle", "Run", "Hold:0", "Hold:1", "Jog", "Alarm", "Door:0", "Check", "Home", "Sleep"].contains(&state),
            "bad state in {line:?}"
        );
        let pos = fields.next().unwrap_or_default();
        let coords = pos.strip_prefix("MPos:").or_else(|| pos.strip_prefix("WPos:"));
        let coords = coords.unwrap_or_else(|| panic!("position must follow the state: {line:?}"));
        assert!(coords.split(',').count() == 3 && coords.split(',').all(decimal3), "bad position in {line:?}");
        let mut saw_fs = false;
        for f in fields {
            let (name, value) = f.split_once(':').unwrap_or_else(|| panic!("field without ':' in {line:?}"));
            let parts: Vec<&str> = value.split(',').collect();
            match name {
                "FS" => {
                    saw_fs = true;
                    assert!(parts.len() == 2 && parts.iter().all(|p| digits(p)), "bad FS in {line:?}");
                }
                "Bf" => assert!(parts.len() == 2 && parts.iter().all(|p| digits(p)), "bad Bf in {line:?}"),
                "WCO" => assert!(parts.len() == 3 && parts.iter().all(|p| decimal3(p)), "bad WCO in {line:?}"),
                "Ov" => assert!(parts.len() == 3 && parts.iter().all(|p| digits(p)), "bad Ov in {line:?}"),
                "A" => assert!(value.bytes().all(|b| b"SCFM".contains(&b)), "bad A in {line:?}"),
                _ => panic!("unknown status field {name} in {line:?}"),
            }
        }
        assert!(saw_fs, "no FS field in {line:?}");
        return "status";
    }
    if let Some(body) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        let (tag, _) = body.split_once(':').unwrap_or_else(|| panic!("bad push message {line:?}"));
        assert!(
            [
                "MSG", "GC", "HLP", "VER", "OPT", "G54", "G55", "G56", "G57", "G58", "G59", "G28", "G30", "G92", "TLO",
                "PRB", "echo"
            ]
            .contains(&tag),
            "unknown push message {line:?}"
        );
        return if tag == "MSG" { "msg" } else { "push" };
    }
    if line.starts_with('$') && line.contains('=') {
        return "setting";
    }
    panic!("not a grbl 1.1 message: {line:?}");
}

/// Splits output into lines, checking grbl's `\r\n` line ending on each.
fn grbl_lines(out: &str) -> Vec<String> {
    assert!(out.is_empty() || out.ends_with("\r\n"), "output must end in CRLF: {out:?}");
    out.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            assert!(!l.contains('\r') && !l.contains('\n'), "stray line break in {l:?}");
            l.to_string()
        })
        .collect()
}

#[test]
fn every_response_and_status_follows_the_grbl_1_1_interface() {
    let mut c = plain();
    let mut out = take(&mut c);
    assert!(out.starts_with("\r\nGrbl 1.1h ['$' for help]\r\n"), "the banner starts with a blank line");
    out.push_str(&send(&mut c, "?", 0.0)); // Idle
    out.push_str(&send(&mut c, "M3 S12000\nG1 F1200 X10\n", 0.0));
    out.push_str(&send(&mut c, "?", 0.3)); // Run
    out.push_str(&send(&mut c, "!", 0.3));
    out.push_str(&send(&mut c, "?", 0.305)); // Hold:1
    out.push_str(&send(&mut c, "?", 1.0)); // Hold:0
    out.push_str(&send(&mut c, "~", 1.0));
    out.push_str(&run_to_quiet(&mut c));
    out.push_str(&send(&mut c, "G1 X\n$G\n$I\n$#\n$\n$$\nG0 X999\n", 20.0)); // error:2, pushes, ALARM:2
    out.push_str(&send(&mut c, "?", 20.0)); // Alarm
    out.push_str(&send(&mut c, "\x18", 20.1));
    out.push_str(&send(&mut c, "$X\n$10=2\n?$C\n?$C\n", 20.2)); // WPos, Check
    let mut seen = std::collections::BTreeSet::new();
    let mut states = std::collections::BTreeSet::new();
    for line in grbl_lines(&out) {
        let class = grbl_class(&line);
        seen.insert(class);
        if class == "status" {
            let state = line[1..].split('|').next().unwrap_or_default().to_string();
            states.insert(state);
        }
    }
    for class in ["ok", "error", "alarm", "welcome", "status", "msg", "push", "setting"] {
        assert!(seen.contains(class), "no {class} message was produced: {out}");
    }
    for state in ["Idle", "Run", "Hold:1", "Hold:0", "Alarm", "Check"] {
        assert!(states.contains(state), "no status in state {state}: {states:?}");
    }
    // 20 mm/s after a 0.02 s ramp (0.2 mm): 5.8 mm at 0.3 s.
    assert!(out.contains("<Run|MPos:5.800,0.000,50.000|FS:1200,12000>\r\n"), "{out}");
    assert!(out.contains("ALARM:2\r\n[MSG:Reset to continue]\r\n"));
    assert!(out.contains("<Check|WPos:"), "{out}");
}

#[test]
#[should_panic(expected = "not a grbl 1.1 message")]
fn the_format_checker_rejects_what_grbl_never_sends() {
    grbl_class("OK");
}

#[test]
#[should_panic(expected = "bad position")]
fn the_format_checker_rejects_a_two_decimal_position() {
    grbl_class("<Idle|MPos:0.00,0.000,0.000|FS:0,0>");
}
