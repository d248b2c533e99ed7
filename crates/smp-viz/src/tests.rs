//! Recorder tests: real `.rrd` files in a temp dir, decoded back with rerun's own decoder.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};

use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};
use smp_core::camera::CameraIntrinsics;
use smp_core::image::{CameraView, DepthImage, RgbImage};
use smp_core::map::{Follicle, FollicleKind, ScalpMap};
use smp_core::plan::{DotState, PlanEstimates, PlannedDot, SessionLimits, SessionPlan, SessionSpec, Zone};
use smp_core::NeedleEntry;

use super::*;
use crate::convert::tests::dome_map;

/// Decodes an `.rrd` and returns, per entity path, the number of rows and whether any was static.
fn decode(path: &Path) -> BTreeMap<String, (usize, bool)> {
    use rerun::external::re_log_encoding::DecoderApp;
    let file = std::fs::File::open(path).expect("open rrd");
    let mut out: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    let mut app_ids = Vec::new();
    for msg in DecoderApp::decode_lazy(BufReader::new(file)) {
        let msg = msg.expect("rrd decodes");
        app_ids.push(msg.store_id().application_id().to_string());
        if let rerun::log::LogMsg::ArrowMsg(_, arrow) = msg {
            let chunk = rerun::log::Chunk::from_arrow_msg(&arrow).expect("chunk decodes");
            let e = out.entry(chunk.entity_path().to_string()).or_default();
            e.0 += chunk.num_rows();
            e.1 |= chunk.is_static();
        }
    }
    assert!(!app_ids.is_empty(), "no messages in {}", path.display());
    assert!(app_ids.iter().all(|a| a == APPLICATION_ID), "application ids {app_ids:?}");
    out
}

fn magic(path: &Path) -> [u8; 4] {
    let mut buf = [0u8; 4];
    std::fs::File::open(path).expect("open").read_exact(&mut buf).expect("4 bytes");
    buf
}

fn intrinsics(w: u32, h: u32, f: f64) -> CameraIntrinsics {
    CameraIntrinsics {
        width_px: w,
        height_px: h,
        fx_px: f,
        fy_px: f,
        cx_px: w as f64 / 2.0,
        cy_px: h as f64 / 2.0,
        distortion: [0.0; 5],
    }
}

fn looking_down(x: f64, y: f64, z: f64) -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::new(x, y, z), UnitQuaternion::from_euler_angles(std::f64::consts::PI, 0.0, 0.0))
}

fn gradient(w: u32, h: u32) -> RgbImage {
    let mut img = RgbImage::new(w, h, [0, 0, 0]);
    for y in 0..h {
        for x in 0..w {
            img.put(x, y, [(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]);
        }
    }
    img
}

/// Skin-coloured image with per-pixel noise, which compresses about as badly as a camera frame.
fn noisy_skin(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut img = RgbImage::new(w, h, [0, 0, 0]);
    for y in 0..h {
        for x in 0..w {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = (state % 17) as i32 - 8;
            let base = [225, 180, 150].map(|c: i32| (c + n - ((x / 40 + y / 40) % 3) as i32 * 10).clamp(0, 255) as u8);
            img.put(x, y, base);
        }
    }
    img
}

fn view(label: &str, w: u32, h: u32, at: [f64; 3], with_depth: bool) -> CameraView {
    CameraView {
        label: label.into(),
        intrinsics: intrinsics(w, h, 2000.0),
        base_from_camera: looking_down(at[0], at[1], at[2]),
        image: gradient(w, h),
        depth: with_depth.then(|| DepthImage { width: w, height: h, z_mm: vec![80.0; (w * h) as usize] }),
    }
}

fn spec() -> SessionSpec {
    SessionSpec {
        version: 1,
        session: 1,
        zone: Zone::Crown,
        treat: vec![smp_core::map::RegionKind::Bald],
        target_density_per_cm2: 70.0,
        session_share: 0.4,
        min_spacing_mm: 0.9,
        depth_mm: 1.0,
        depth_limit_mm: 1.2,
        dwell_s: 0.1,
        hover_mm: 2.0,
        plunge_feed_mm_per_min: 600.0,
        retract_feed_mm_per_min: 1200.0,
        travel_feed_mm_per_min: 6000.0,
        max_feed_mm_per_min: 9000.0,
        cartridge_rpm: 8000.0,
        dilution_pct: 60.0,
        region_margin_mm: 2.0,
        max_tilt_deg: 30.0,
        max_dots: None,
        seed: 7,
        hairline: None,
        zones: None,
        recovery: None,
    }
}

/// `n` dots on a 1 mm lattice over the dome, zones alternating crown / mid-scalp.
fn plan(map: &ScalpMap, n: usize) -> SessionPlan {
    let side = (n as f64).sqrt().ceil() as usize;
    let dots = (0..n)
        .map(|k| {
            let (x, y) = ((k % side) as f64 - side as f64 / 2.0, (k / side) as f64 - side as f64 / 2.0);
            let (p, nrm) = map.surface.sample_head(x, y);
            PlannedDot {
                id: k as u32,
                x_mm: p.x,
                y_mm: p.y,
                z_mm: p.z,
                normal: [nrm.x, nrm.y, nrm.z],
                layer: 1,
                zone: if k % 2 == 0 { Zone::Crown } else { Zone::MidScalp },
                depth_mm: 1.0,
                dilution_pct: 60.0,
                tone: None,
            }
        })
        .collect();
    SessionPlan {
        session: 1,
        spec: spec(),
        limits: SessionLimits {
            depth_limit_mm: 1.2,
            max_feed_mm_per_min: 9000.0,
            min_spacing_mm: 0.9,
            max_tilt_deg: 30.0,
        },
        treatment: map.regions.clone(),
        dots,
        estimates: PlanEstimates { tour_mm: 0.0, arm_time_s: 0.0, treated_area_cm2: 0.0, tour_lower_bound_mm: None },
        warnings: vec![],
    }
}

fn with_follicles(mut map: ScalpMap, n: usize) -> ScalpMap {
    map.follicles = (0..n)
        .map(|k| {
            let (x, y) = ((k % 97) as f64 * 0.9 - 43.0, (k / 97) as f64 * 0.9 - 40.0);
            let (p, nrm) = map.surface.sample_head(x, y);
            Follicle {
                x_mm: p.x,
                y_mm: p.y,
                z_mm: p.z,
                normal: [nrm.x, nrm.y, nrm.z],
                diameter_mm: 0.3,
                darkness: 0.8,
                kind: if k % 5 == 0 { FollicleKind::SmpDot } else { FollicleKind::Natural },
            }
        })
        .collect();
    map
}

/// Toolpath: hover above each dot, plunge, retract.
fn toolpath(plan: &SessionPlan) -> Vec<[f64; 3]> {
    plan.dots
        .iter()
        .flat_map(|d| {
            let p = Vector3::from(d.position());
            let n = Vector3::from(d.normal);
            let hover = p + n * 2.0;
            let deep = p - n * d.depth_mm;
            [hover, deep, hover].map(|v| [v.x, v.y, v.z])
        })
        .collect()
}

/// A session's worth of events: sent, accepted, executed per dot, and one entry per dot.
fn session(rec: &Recorder, plan: &SessionPlan) -> Vec<NeedleEntry> {
    let mut entries = Vec::new();
    for (k, d) in plan.dots.iter().enumerate() {
        let t = k as f64 * 0.2;
        for (dt, s) in [(0.0, DotState::Sent), (0.05, DotState::Accepted), (0.15, DotState::Executed)] {
            rec.log_dot_state(t + dt, d.id, s, d.position());
        }
        entries.push(NeedleEntry { base_mm: d.position(), head_mm: d.position(), depth_mm: 1.0, time_s: t + 0.1 });
    }
    entries
}

#[test]
fn every_kind_of_log_lands_in_a_valid_rrd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.rrd");
    let config = VizConfig { base_from_head: Isometry3::translation(250.0, 0.0, 150.0), ..VizConfig::default() };
    let rec = Recorder::to_file_with(&path, config).expect("recorder");
    assert_eq!(rec.path(), path.as_path());

    let map = with_follicles(dome_map(40, 40, 2.5), 300);
    let plan = plan(&map, 200);
    let views = vec![
        view("overview", 320, 240, [250.0, 0.0, 520.0], true),
        view("flange 0", 160, 120, [250.0, 0.0, 330.0], true),
        view("flange/1", 160, 120, [270.0, 0.0, 330.0], false),
    ];
    rec.log_camera_views(&views); // 3 messages
    rec.log_scalp_outline(&[[240.0, 0.0, 240.0], [260.0, 0.0, 240.0], [250.0, 10.0, 240.0]]);
    rec.log_map(&map);
    rec.log_plan(&plan);
    rec.log_toolpath(&toolpath(&plan));
    let entries = session(&rec, &plan); // 600 messages
    rec.log_entries(&entries);
    rec.log_image("mockup", &gradient(200, 100));
    rec.set_base_from_head(&Isometry3::translation(250.0, 0.0, 151.0));
    let stats = rec.finish().expect("finish");

    let expected_messages = 3 + 1 + 1 + 1 + 1 + 600 + 1 + 1 + 1;
    assert_eq!(stats, VizStats { logged: expected_messages, dropped: 0, failed: 0, file_bytes: stats.file_bytes });
    let len = std::fs::metadata(&path).expect("file exists").len();
    assert_eq!(stats.file_bytes, len);
    assert!(len > 10_000, "suspiciously small rrd: {len} bytes");
    assert_eq!(&magic(&path), b"RRF2");

    let entities = decode(&path);
    for static_path in [
        "/",
        "/scan",
        "/scan/overview",
        "/scan/tiles/flange_0",
        "/scan/tiles/flange_1",
        "/scan/outline",
        "/map/follicles",
        "/map/surface",
        "/plan",
        "/plan/dots",
        "/plan/toolpath",
        "/session",
        "/mockup",
    ] {
        let (rows, is_static) =
            entities.get(static_path).copied().unwrap_or_else(|| panic!("{static_path} missing: {entities:?}"));
        assert!(rows > 0 && is_static, "{static_path}: {rows} rows, static {is_static}");
    }
    // one row per state change, one per entry; the growing sets as a handful of snapshots
    assert_eq!(entities["/session/last_dot"], (600, false));
    assert_eq!(entities["/session/entry_depth_mm"], (200, false));
    let (dot_snapshots, st) = entities["/session/dots"];
    assert!(!st && (600 / 64..=600 / 64 + 1).contains(&dot_snapshots), "{dot_snapshots} dot snapshots");
    let (entry_snapshots, st) = entities["/session/entries"];
    assert!(!st && (200 / 64..=200 / 64 + 1).contains(&entry_snapshots), "{entry_snapshots} entry snapshots");
}

#[test]
fn saturating_the_channel_drops_and_counts_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("busy.rrd");
    let config = VizConfig { channel_capacity: 16, ..VizConfig::default() };
    let (rec, gate) = Recorder::to_file_gated(&path, config).expect("recorder");
    for k in 0..40u32 {
        // would hang here if the send blocked on the paused consumer
        rec.log_dot_state(k as f64, k, DotState::Executed, [0.0, 0.0, 90.0]);
    }
    assert_eq!(rec.stats(), VizStats { logged: 0, dropped: 24, failed: 0, file_bytes: 0 });
    gate.send(()).expect("release worker");
    let stats = rec.finish().expect("finish");
    assert_eq!((stats.logged, stats.dropped), (16, 24));
    assert_eq!(&magic(&path), b"RRF2");
    assert_eq!(decode(&path)["/session/last_dot"].0, 16);
}

#[test]
fn byte_budget_drops_big_payloads_but_admits_one_when_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("budget.rrd");
    let img = gradient(100, 100); // 30 kB
    let config = VizConfig { max_bytes_in_flight: 50_000, ..VizConfig::default() };
    let (rec, gate) = Recorder::to_file_gated(&path, config).expect("recorder");
    rec.log_image("a", &img);
    rec.log_image("b", &img); // 60 kB queued would exceed the budget
    rec.log_dot_state(0.0, 1, DotState::Sent, [0.0; 3]); // no payload: still fits
    assert_eq!(rec.stats().dropped, 1);
    drop(gate);
    let stats = rec.finish().expect("finish");
    assert_eq!((stats.logged, stats.dropped), (2, 1));
    let entities = decode(&path);
    assert!(entities.contains_key("/a") && !entities.contains_key("/b"));
}

#[test]
fn dropping_without_finish_still_closes_a_readable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dropped.rrd");
    {
        let rec = Recorder::to_file(&path).expect("recorder");
        rec.log_toolpath(&[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]);
    }
    assert_eq!(&magic(&path), b"RRF2");
    assert!(decode(&path).contains_key("/plan/toolpath"));
}

#[test]
fn unwritable_path_and_bad_config_fail_up_front() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no/such/dir/x.rrd");
    let err = Recorder::to_file(&missing).expect_err("missing directory");
    assert!(matches!(err, VizError::Create { .. }), "{err}");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
    let err =
        Recorder::to_file_with(&dir.path().join("x.rrd"), VizConfig { channel_capacity: 0, ..VizConfig::default() })
            .expect_err("zero capacity");
    assert!(matches!(err, VizError::Config(_)), "{err}");
}

#[test]
fn recorder_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Recorder>();
}

/// A demo-sized log, for the file-size figure in reports:
/// `cargo test -p smp-viz --lib -- --ignored --nocapture typical_session_size`
/// (set `SMP_VIZ_TYPICAL_OUT=/tmp/typical.rrd` to keep the file).
fn wait_until_logged(rec: &Recorder, n: u64) {
    while rec.stats().logged + rec.stats().failed < n {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
#[ignore = "slow: writes a demo-sized recording and prints its size"]
fn typical_session_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    // SMP_VIZ_TYPICAL_OUT keeps the file, e.g. to check it with `rerun rrd verify`.
    let path = std::env::var_os("SMP_VIZ_TYPICAL_OUT").map_or_else(|| dir.path().join("typical.rrd"), PathBuf::from);
    let started = std::time::Instant::now();
    // SMP_VIZ_TILE_SIDE overrides `tile_max_side_px` (0 = full resolution).
    let tile_max_side_px = std::env::var("SMP_VIZ_TILE_SIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(400);
    let config = VizConfig {
        base_from_head: Isometry3::translation(250.0, 0.0, 150.0),
        tile_max_side_px,
        ..VizConfig::default()
    };
    let rec = Recorder::to_file_with(&path, config).expect("recorder");
    let mut views = vec![view("overview", 1280, 960, [250.0, 0.0, 520.0], true)];
    for k in 0..30 {
        views.push(view(
            &format!("flange-{k:03}"),
            800,
            600,
            [230.0 + (k % 6) as f64 * 8.0, (k / 6) as f64 * 6.0, 330.0],
            true,
        ));
    }
    for (k, v) in views.iter_mut().enumerate() {
        v.image = noisy_skin(v.image.width, v.image.height, k as u64);
    }
    let t_static = std::time::Instant::now();
    rec.log_camera_views(&views);
    let map = with_follicles(dome_map(120, 120, 1.0), 2000);
    let plan = plan(&map, 3000);
    rec.log_map(&map);
    rec.log_plan(&plan);
    rec.log_toolpath(&toolpath(&plan));
    let static_messages = views.len() as u64 + 3;
    wait_until_logged(&rec, static_messages);
    let static_s = t_static.elapsed().as_secs_f64();
    // The pump spreads its calls over minutes; here they are paced only as much as needed to
    // keep the queue from overflowing, which measures the worker's throughput.
    let t_hot = std::time::Instant::now();
    let mut sent = static_messages;
    let mut entries = Vec::new();
    for (k, d) in plan.dots.iter().enumerate() {
        let t = k as f64 * 0.2;
        for (dt, s) in [(0.0, DotState::Sent), (0.05, DotState::Accepted), (0.15, DotState::Executed)] {
            while sent - rec.stats().logged > 900 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            rec.log_dot_state(t + dt, d.id, s, d.position());
            sent += 1;
        }
        entries.push(NeedleEntry { base_mm: d.position(), head_mm: d.position(), depth_mm: 1.0, time_s: t + 0.1 });
    }
    wait_until_logged(&rec, sent);
    let hot_s = t_hot.elapsed().as_secs_f64();
    rec.log_entries(&entries);
    rec.log_image("mockup", &noisy_skin(1280, 960, 99));
    let stats = rec.finish().expect("finish");
    assert_eq!(stats.dropped, 0);
    eprintln!(
        "typical session: {} bytes ({:.1} MB), {stats:?}, {:.2} s total, {static_s:.2} s for images/map/plan, \
         worker {:.0} dot states per second",
        stats.file_bytes,
        stats.file_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        9000.0 / hot_s
    );
}
