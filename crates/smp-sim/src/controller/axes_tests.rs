//! Tests of the `xyzab` and `joints` profiles on the pure controller: axis words, status and
//! settings, soft limits, rotary timing, tilted entries, and the tip path of joint moves.

use super::*;
use approx::assert_relative_eq;
use nalgebra::{Isometry3, Vector3};
use proptest::prelude::*;
use smp_core::arm::Arm;
use smp_core::kinematics::trapezoid_time_s;
use smp_core::rig::{Rig, SIX_AXIS_RIG_TOML, XYZAB_RIG_TOML};

use super::test_io::{controller, run_to_quiet, send, t, take};

fn rig5() -> Rig {
    Rig::from_toml_str(XYZAB_RIG_TOML).unwrap_or_else(|e| panic!("{e}"))
}

fn rig6() -> Rig {
    Rig::from_toml_str(SIX_AXIS_RIG_TOML).unwrap_or_else(|e| panic!("{e}"))
}

fn cfg_for(rig: &Rig) -> ControllerConfig {
    let mut cfg = ControllerConfig::for_rig(rig).unwrap_or_else(|e| panic!("{e}"));
    cfg.report_wco_and_overrides = false;
    cfg
}

#[test]
fn rotary_words_follow_the_profile() {
    // Stock grbl (xyz): A, B and C are unknown words, as today.
    let mut c = controller(ControllerConfig::default(), Box::new(NoSkin));
    take(&mut c);
    assert_eq!(send(&mut c, "G1X10A5F100\n", 0.0), "error:20\r\n");
    assert_eq!(send(&mut c, "B1\n", 0.0), "error:20\r\n");
    // xyzab: A and B move, C does not exist.
    let mut c = controller(cfg_for(&rig5()), Box::new(NoSkin));
    take(&mut c);
    assert_eq!(send(&mut c, "G1C5F100\n", 0.0), "error:20\r\n");
    assert_eq!(send(&mut c, "G1A5B-3F600\n", 0.0), "ok\r\n");
    run_to_quiet(&mut c);
    assert_eq!(c.machine_position()[3..], [5.0, -3.0]);
    // joints: all six.
    let mut c = controller(cfg_for(&rig6()), Box::new(NoSkin));
    take(&mut c);
    assert_eq!(send(&mut c, "G1X181Y-91Z91A-91B-91C1F6000\n", 0.0), "ok\r\n");
    run_to_quiet(&mut c);
    assert_eq!(c.machine_position(), vec![181.0, -91.0, 91.0, -91.0, -91.0, 1.0]);
}

#[test]
fn status_and_settings_list_every_configured_axis() {
    let mut c = controller(cfg_for(&rig5()), Box::new(NoSkin));
    take(&mut c);
    assert_eq!(send(&mut c, "?", 0.0), "<Idle|MPos:0.000,0.000,400.000,0.000,0.000|FS:0,0>\r\n");
    let settings = send(&mut c, "$$\n", 0.0);
    for line in ["$103=1000.000", "$104=1000.000", "$113=5400.000", "$123=900.000", "$133=140.000"] {
        assert!(settings.contains(line), "{line} missing in {settings}");
    }
    assert!(!settings.contains("$105="), "{settings}");
    assert_eq!(send(&mut c, "$105=3\n", 0.0), "error:3\r\n", "no sixth axis on a 5-axis machine");
    assert_eq!(send(&mut c, "$113=0\n", 0.0), "error:3\r\n", "a zero rate is refused");
    assert_eq!(send(&mut c, "$123=450\n", 0.0), "ok\r\n");
    let info = send(&mut c, "$I\n", 0.0);
    assert!(info.contains("[AXS:5:XYZAB]\r\n"), "a 5-axis build names its axes as grblHAL does: {info}");

    let mut c = controller(cfg_for(&rig6()), Box::new(NoSkin));
    take(&mut c);
    assert_eq!(send(&mut c, "?", 0.0), "<Idle|MPos:180.000,-90.000,90.000,-90.000,-90.000,0.000|FS:0,0>\r\n");
    let settings = send(&mut c, "$$\n", 0.0);
    for line in ["$105=100000.000", "$115=10800.000", "$125=800.000", "$132=360.000"] {
        assert!(settings.contains(line), "{line} missing in {settings}");
    }
    assert!(send(&mut c, "$I\n", 0.0).contains("[AXS:6:XYZABC]"));
    // The needle starts where the arm's home puts it, pointing down.
    let arm = rig6().arm_model().unwrap_or_else(|| panic!("arm"));
    let home: [f64; 6] = std::array::from_fn(|i| [180.0f64, -90.0, 90.0, -90.0, -90.0, 0.0][i].to_radians());
    let tip = arm.base_from_needle(&home).translation.vector;
    assert_relative_eq!(Vector3::from(c.needle_tip_base_mm()), tip, epsilon = 1e-9);
    let start = cfg_for(&rig6()).initial_tip_base_mm().unwrap_or_else(|| panic!("six joints"));
    assert_relative_eq!(Vector3::from(start), tip, epsilon = 1e-9);
    assert_eq!(cfg_for(&rig5()).initial_tip_base_mm(), Some([0.0, 0.0, 400.0]));
    assert_relative_eq!(c.needle_direction_base()[2], -1.0, epsilon = 1e-6);
}

#[test]
fn rotary_and_joint_soft_limits_alarm() {
    let mut c = controller(cfg_for(&rig5()), Box::new(NoSkin));
    take(&mut c);
    let out = send(&mut c, "G1A75F600\n", 0.0);
    assert!(out.contains("ALARM:2"), "A beyond 70 deg: {out}");
    // J3 is limited to [-180, 180] degrees.
    let mut c = controller(cfg_for(&rig6()), Box::new(NoSkin));
    take(&mut c);
    let out = send(&mut c, "G1Z185F600\n", 0.0);
    assert!(out.contains("ALARM:2"), "J3 beyond 180 deg: {out}");
    // Inside every joint's range, but the tip leaves the Cartesian workspace (here a band of
    // +-1 mm around the home height): J2 turning 10 degrees moves the tip tens of mm.
    let mut cfg = cfg_for(&rig6());
    let home_z = {
        let c = controller(cfg.clone(), Box::new(NoSkin));
        c.needle_tip_base_mm()[2]
    };
    cfg.dynamics.z.min_mm = home_z - 1.0;
    cfg.dynamics.z.max_mm = home_z + 1.0;
    let mut c = controller(cfg, Box::new(NoSkin));
    take(&mut c);
    let out = send(&mut c, "G1Y-80F600\n", 0.0);
    assert!(out.contains("ALARM:2"), "tip out of the workspace: {out}");
}

#[test]
fn rotary_moves_are_timed_by_the_slowest_axis() {
    // A only: F is degrees/min; 3600 deg/min = 60 deg/s under the 90 deg/s limit.
    let mut c = controller(cfg_for(&rig5()), Box::new(NoSkin));
    take(&mut c);
    send(&mut c, "G1A60F3600\n", 0.0);
    run_to_quiet(&mut c);
    assert_relative_eq!(c.machine_time_s(), trapezoid_time_s(60.0, 60.0, 900.0), epsilon = 1e-6);
    // X and A together: F is the tip feed; A turns 6 deg per mm, so its 900 deg/s² limits
    // the move's acceleration to 150 mm/s² and its rate is not reached (60 deg/s).
    let mut c = controller(cfg_for(&rig5()), Box::new(NoSkin));
    take(&mut c);
    send(&mut c, "G1X10A60F600\n", 0.0);
    run_to_quiet(&mut c);
    assert_relative_eq!(c.machine_time_s(), trapezoid_time_s(10.0, 10.0, 150.0), epsilon = 1e-6);
    // Now A's rate governs: 60 deg over 2 mm at F6000 would be 300 deg/s; 90 deg/s allowed.
    let mut c = controller(cfg_for(&rig5()), Box::new(NoSkin));
    take(&mut c);
    send(&mut c, "G1X2A60F6000\n", 0.0);
    run_to_quiet(&mut c);
    assert_relative_eq!(c.machine_time_s(), trapezoid_time_s(2.0, 90.0 / 30.0, 900.0 / 30.0), epsilon = 1e-6);
    // Joints: F is the joint step's norm in deg/min; J1 at 800 deg/s².
    let mut c = controller(cfg_for(&rig6()), Box::new(NoSkin));
    take(&mut c);
    send(&mut c, "G1X190F1200\n", 0.0);
    run_to_quiet(&mut c);
    assert_relative_eq!(c.machine_time_s(), trapezoid_time_s(10.0, 20.0, 800.0), epsilon = 1e-6);
}

/// A tilted plunge into a flat skin: the entry is where the tip crosses, the depth is along
/// the needle (vertical depth / cos tilt) and the angle to the normal is the tilt.
#[test]
fn tilted_plunge_records_depth_along_the_needle_and_the_angle() {
    let skin = FlatSkin { z_mm: 100.0, head_from_base: Isometry3::identity() };
    let mut c = controller(cfg_for(&rig5()), Box::new(skin));
    take(&mut c);
    // Needle turned by A = 30 deg: it points along (0, sin 30, -cos 30) (smp_core::arm).
    let d = smp_core::arm::needle_direction_ab(30.0, 0.0);
    assert_relative_eq!(d, Vector3::new(0.0, 0.5, -(3f64.sqrt()) / 2.0), epsilon = 1e-12);
    let start = Vector3::new(100.0, 0.0, 100.0) - d * 2.0;
    let end = Vector3::new(100.0, 0.0, 100.0) + d * 1.2;
    let program = format!(
        "G1X{:.4}Y{:.4}Z{:.4}A30F3000\nM3S9000\nG1X{:.4}Y{:.4}Z{:.4}F600\nG4P0.1\nG1X{:.4}Y{:.4}Z{:.4}F1200\nM5\n",
        start.x, start.y, start.z, end.x, end.y, end.z, start.x, start.y, start.z
    );
    send(&mut c, &program, 0.0);
    run_to_quiet(&mut c);
    let report = c.finish(t(100.0));
    assert_eq!(report.entries.len(), 1, "{:?}", report.entries);
    let e = report.entries[0];
    assert_relative_eq!(Vector3::from(e.base_mm), Vector3::new(100.0, 0.0, 100.0), epsilon = 1e-3);
    assert_relative_eq!(e.depth_mm, 1.2, epsilon = 1e-3);
    let g = report.entry_geometry[0];
    assert_relative_eq!(g.needle_to_normal_deg.unwrap_or(f64::NAN), 30.0, epsilon = 1e-6);
    assert_relative_eq!(Vector3::from(g.needle_dir_base), d, epsilon = 1e-6);
}

#[test]
fn for_rig_keeps_the_xyz_controller_unchanged_and_names_missing_tables() {
    let rig = Rig::default_sim();
    assert_eq!(ControllerConfig::for_rig(&rig), Ok(ControllerConfig::new(rig.dynamics)));
    let mut bad = rig5();
    bad.five_axis = None;
    let err = ControllerConfig::for_rig(&bad).expect_err("no table");
    assert!(err.to_string().contains("five_axis"), "{err}");
    // A config written before the axes existed still parses as xyz.
    let cfg = ControllerConfig::default();
    let text = toml::to_string(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let stripped: String = text.lines().filter(|l| !l.starts_with("initial_rotary_deg")).collect::<Vec<_>>().join("\n");
    let back: ControllerConfig = toml::from_str(&stripped).unwrap_or_else(|e| panic!("{e}\n{stripped}"));
    assert_eq!(back, cfg);
    let mut cfg5 = cfg_for(&rig5());
    cfg5.initial_rotary_deg = [80.0, 0.0, 0.0];
    let err = cfg5.validate().expect_err("A outside its travel");
    assert!(err.to_string().contains("initial_rotary_deg"), "{err}");
}

fn arm6() -> Arm {
    rig6().arm_model().unwrap_or_else(|| panic!("arm"))
}

fn tip_at(arm: &Arm, q_deg: &[f64; 6]) -> (Vector3<f64>, Vector3<f64>) {
    let q: [f64; 6] = std::array::from_fn(|i| q_deg[i].to_radians());
    let p = arm.base_from_needle(&q);
    (p.translation.vector, p.rotation * Vector3::new(0.0, 0.0, -1.0))
}

fn lerp6(a: &[f64; 6], b: &[f64; 6], u: f64) -> [f64; 6] {
    std::array::from_fn(|i| a[i] + (b[i] - a[i]) * u)
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// A joint move's tip follows the forward kinematics of the linearly interpolated joints:
    /// mid-move the controller's tip is on the FK path (within 0.01 mm), and the skin entry
    /// and depth the contact detector records match an independent dense FK search.
    #[test]
    fn joint_move_tip_path_matches_forward_kinematics(
        offset in proptest::array::uniform6(-15.0f64..15.0),
        delta in proptest::array::uniform6(-6.0f64..6.0),
        frac in 0.05f64..0.95,
    ) {
        let arm = arm6();
        let home = [180.0, -90.0, 90.0, -90.0, -90.0, 0.0];
        let q0: [f64; 6] = std::array::from_fn(|i| round4(home[i] + offset[i]));
        let q1: [f64; 6] = std::array::from_fn(|i| round4(q0[i] + delta[i]));
        // Independent FK path, densely sampled.
        const N: usize = 2_000;
        let path: Vec<(Vector3<f64>, Vector3<f64>)> =
            (0..=N).map(|k| tip_at(&arm, &lerp6(&q0, &q1, k as f64 / N as f64))).collect();
        // The skin 2 mm above where the move ends: a plunge to about 2 mm along the needle.
        let z0 = path[N].0.z + 2.0;
        let monotone = path.windows(2).all(|w| w[1].0.z < w[0].0.z);
        prop_assume!(monotone && path[0].0.z - z0 > 0.5);

        let mut cfg = cfg_for(&rig6());
        cfg.initial_position_mm = [q0[0], q0[1], q0[2]];
        cfg.initial_rotary_deg = [q0[3], q0[4], q0[5]];
        let skin = FlatSkin { z_mm: z0, head_from_base: Isometry3::identity() };
        let mut c = controller(cfg, Box::new(skin));
        take(&mut c);
        let line = format!(
            "M3S9000\nG1X{:.4}Y{:.4}Z{:.4}A{:.4}B{:.4}C{:.4}F600\n",
            q1[0], q1[1], q1[2], q1[3], q1[4], q1[5]
        );
        let out = send(&mut c, &line, 0.0);
        prop_assert_eq!(out, "ok\r\nok\r\n");
        let end = c.poll_timeout().map_or(0.0, |d| d.as_secs_f64());
        prop_assert!(end > 0.0);
        c.handle_timeout(t(end * frac));
        // Mid-move: the joints lie on the straight joint line, the tip on the FK path.
        let q = c.machine_position();
        let dq: f64 = (0..6).map(|i| (q1[i] - q0[i]).powi(2)).sum::<f64>();
        let u = (0..6).map(|i| (q[i] - q0[i]) * (q1[i] - q0[i])).sum::<f64>() / dq;
        for i in 0..6 {
            prop_assert!((q[i] - (q0[i] + (q1[i] - q0[i]) * u)).abs() < 1e-9, "joint {} off the line", i + 1);
        }
        let tip = Vector3::from(c.needle_tip_base_mm());
        let to_segment = |a: &Vector3<f64>, b: &Vector3<f64>| {
            let ab = b - a;
            let u = ((tip - a).dot(&ab) / ab.norm_squared().max(1e-300)).clamp(0.0, 1.0);
            (a + ab * u - tip).norm()
        };
        let nearest = path.windows(2).map(|w| to_segment(&w[0].0, &w[1].0)).fold(f64::INFINITY, f64::min);
        prop_assert!(nearest < 0.01, "tip {} mm from the FK path", nearest);
        run_to_quiet(&mut c);
        let report = c.finish(t(end + 1.0));
        prop_assert_eq!(report.entries.len(), 1);
        // Independent crossing: bisection on FK between the dense samples around z0.
        let k = path.iter().position(|(p, _)| p.z < z0).unwrap_or(N);
        let (mut lo, mut hi) = ((k - 1) as f64 / N as f64, k as f64 / N as f64);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if tip_at(&arm, &lerp6(&q0, &q1, mid)).0.z >= z0 { lo = mid } else { hi = mid }
        }
        let crossing = tip_at(&arm, &lerp6(&q0, &q1, hi)).0;
        let e = report.entries[0];
        prop_assert!((Vector3::from(e.base_mm) - crossing).norm() < 0.01, "entry {:?} vs {:?}", e.base_mm, crossing);
        // Deepest point along the needle (flat skin: vertical depth over the needle's cos).
        let depth = path[k..].iter().map(|(p, d)| (z0 - p.z) / -d.z).fold(0.0f64, f64::max);
        prop_assert!((e.depth_mm - depth).abs() < 0.01, "depth {} vs {}", e.depth_mm, depth);
    }
}

/// The CLI builds its skin from the synthetic patient's `surface_z_base` alone; tilted needles
/// over the crown must get consistent answers from the trait's height-field defaults: the
/// line crossing lies on the surface and the normal is a unit vector facing up and out.
#[test]
fn patient_height_field_answers_tilted_needles() {
    use crate::patient::{PatientSpec, SyntheticPatient};
    let spec = PatientSpec::default_patient().unwrap_or_else(|e| panic!("{e}"));
    let patient = SyntheticPatient::generate(&spec);
    let base_from_head = Rig::default_sim().base_from_head_nominal();
    let skin = FnSkin::new(base_from_head.inverse(), move |x, y| patient.surface_z_base(&base_from_head, x, y));
    let centre = base_from_head.translation.vector;
    let mut answered = 0;
    for k in 0..40 {
        let (x, y) = (centre.x - 40.0 + 2.0 * k as f64, centre.y + 15.0 - 0.7 * k as f64);
        let Some(z) = skin.surface_z_base(x, y) else { continue };
        let Some(n) = skin.surface_normal_at(x, y, None) else { continue };
        let n = Vector3::from(n);
        assert_relative_eq!(n.norm(), 1.0, epsilon = 1e-9);
        assert!(n.z > 0.0);
        // A needle 10 degrees off the inward normal, tip 1 mm inside along it.
        let helper = if n.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
        let d = (-n * 10f64.to_radians().cos() + n.cross(&helper).normalize() * 10f64.to_radians().sin()).normalize();
        let tip = Vector3::new(x, y, z) + d;
        let back = -d;
        let l = skin.line_crossing_at([tip.x, tip.y, tip.z], [back.x, back.y, back.z], None);
        let l = l.unwrap_or_else(|| panic!("no crossing at ({x}, {y})"));
        assert!((l - 1.0).abs() < 0.01, "depth {l} mm along the needle, ~1 mm expected");
        let on = tip + back * l;
        let h = skin.surface_z_base(on.x, on.y).unwrap_or(f64::NAN);
        assert!((h - on.z).abs() < 1e-4, "crossing {:.6} mm off the surface", h - on.z);
        answered += 1;
    }
    assert!(answered > 30, "only {answered} points on the head");
}

/// A feed hold in the middle of a joint move stops on the joint line and a cycle start
/// finishes the move exactly at its target; a reset keeps the joints where they stopped.
#[test]
fn feed_hold_resume_and_reset_on_a_joint_move() {
    let mut c = controller(cfg_for(&rig6()), Box::new(NoSkin));
    take(&mut c);
    send(&mut c, "G1X200Y-80C10F1200\n", 0.0);
    send(&mut c, "!", 0.3);
    run_to_quiet(&mut c);
    assert_eq!(c.state(), MachineState::Hold { complete: true });
    let q = c.machine_position();
    let u = (q[0] - 180.0) / 20.0;
    assert!(u > 0.0 && u < 1.0, "stopped at {q:?}");
    assert_relative_eq!(q[1], -90.0 + 10.0 * u, epsilon = 1e-9);
    assert_relative_eq!(q[5], 10.0 * u, epsilon = 1e-9);
    let now = c.machine_time_s();
    send(&mut c, "~", now);
    run_to_quiet(&mut c);
    assert_eq!(c.machine_position(), vec![200.0, -80.0, 90.0, -90.0, -90.0, 10.0]);
    // Reset mid-move: ALARM:3, and the parser restarts where the joints are (step-rounded).
    let now = c.machine_time_s();
    send(&mut c, "G1X180F600\n", now);
    c.handle_timeout(t(now + 0.5));
    let out = send(&mut c, "\u{18}", now + 0.5);
    assert!(out.contains("ALARM:3"), "{out}");
    let q = c.machine_position();
    assert!(q[0] > 180.0 && q[0] < 200.0, "{q:?}");
    assert_eq!(q[0], (q[0] * 1e5).round() / 1e5, "step-rounded");
    let status = send(&mut c, "?", now + 0.5);
    let rest = status.strip_prefix("<Alarm|MPos:").unwrap_or_else(|| panic!("{status}"));
    let (j1, rest) = rest.split_once(',').unwrap_or_else(|| panic!("{status}"));
    assert!((j1.parse::<f64>().unwrap_or(f64::NAN) - q[0]).abs() <= 0.0005 + 1e-9, "{status} vs {q:?}");
    assert!(rest.starts_with("-80.000,90.000,-90.000,-90.000,10.000|"), "{status}");
}

/// Marlin mode drives the extra axes too, and `M114` lists them after Z.
#[test]
fn marlin_mode_moves_and_reports_a_and_b() {
    let mut cfg = cfg_for(&rig5());
    cfg.protocol = ProtocolMode::Marlin;
    let mut c = controller(cfg, Box::new(NoSkin));
    take(&mut c);
    let line = |n: u32, cmd: &str| {
        let body = format!("N{n} {cmd}");
        format!("{body}*{}\n", marlin_checksum(body.as_bytes()))
    };
    assert_eq!(send(&mut c, &line(1, "G1 X10 A20 B-5 F3000"), 0.0), "ok\n");
    run_to_quiet(&mut c);
    let now = c.machine_time_s();
    let out = send(&mut c, &line(2, "M114"), now);
    assert_eq!(out, "X:10.00 Y:0.00 Z:400.00 A:20.00 B:-5.00 E:0.00 Count X:2500 Y:0 Z:100000 A:20000 B:-5000\nok\n");
}

/// A head that turned on the rest (a moving skin): the tilted needle, aimed along the moved
/// surface's normal, enters where aimed, to the commanded depth along the needle, at ~0 deg;
/// the time-aware surface answers the line crossing and the normal.
#[test]
fn tilted_entry_on_a_turned_head_uses_the_moved_surface() {
    use crate::faults::HeadMove;
    use crate::motion_model::{HeadMotion, MovingSkin};
    use nalgebra::{Point3, Translation3, UnitQuaternion};
    let base_from_head =
        Isometry3::from_parts(Translation3::new(150.0, 0.0, 150.0), UnitQuaternion::from_euler_angles(0.0, 0.3, 0.0));
    // The inner (registered) skin: a plane 60 mm above the head centre, as a height field.
    let inner = FnSkin::new(base_from_head.inverse(), |_x: f64, _y: f64| Some(210.0));
    let turn = HeadMove { time_s: 0.5, translation_mm: [0.0, 0.0, 0.0], rotation_deg: [8.0, -4.0, 0.0] };
    let motion = HeadMotion { steps: vec![turn], registered_base_from_head: base_from_head, ..HeadMotion::default() };
    let delta = motion.base_delta(2.0);
    let skin = MovingSkin::new(inner, motion).unwrap_or_else(|e| panic!("{e}"));
    let aim = delta * Point3::new(150.0, 0.0, 210.0);
    let normal = delta.rotation * Vector3::z();
    let [a, b] = smp_core::arm::ab_deg_for_direction(&-normal).unwrap_or([f64::NAN; 2]);
    let hover = aim + normal * 2.0;
    let bottom = aim - normal * 0.8;
    let mut c = controller(cfg_for(&rig5()), Box::new(skin));
    take(&mut c);
    let program = format!(
        "G4P1\nG1X{:.4}Y{:.4}Z{:.4}A{a:.4}B{b:.4}F3000\nM3S9000\nG1X{:.4}Y{:.4}Z{:.4}F600\nG4P0.05\n\
         G1X{:.4}Y{:.4}Z{:.4}F1200\nM5\n",
        hover.x, hover.y, hover.z, bottom.x, bottom.y, bottom.z, hover.x, hover.y, hover.z
    );
    send(&mut c, &program, 0.0);
    run_to_quiet(&mut c);
    let report = c.finish(t(100.0));
    assert_eq!(report.entries.len(), 1, "{:?}", report.entries);
    let e = report.entries[0];
    assert!(e.time_s > 1.0);
    assert!((Point3::from(e.base_mm) - aim).norm() < 1e-3, "entry {:?} vs aim {aim:?}", e.base_mm);
    assert_relative_eq!(e.depth_mm, 0.8, epsilon = 1e-3);
    let angle = report.entry_geometry[0].needle_to_normal_deg.unwrap_or(f64::NAN);
    assert!(angle < 0.01, "needle {angle} deg off the moved normal");
    // Reported on the head it hit: the registered plane point that was aimed at.
    let aimed_head = base_from_head.inverse() * Point3::new(150.0, 0.0, 210.0);
    assert!((Point3::from(e.head_mm) - aimed_head).norm() < 1e-3, "{:?} vs {aimed_head:?}", e.head_mm);
}
