//! Rendering speed of the simulated cameras: the simulator's share of `smp demo`'s wall time
//! (15-30 flange tiles and one overview per run). Target: < 0.3 s per tile on one core.
//!
//! The 12-megapixel close-up (issue 3): a 4000 x 3000 flange camera with the rig camera's
//! field of view (125 px/mm at the stand-off), the resolution of a current machine-vision
//! sensor; its figure is also printed in megapixels per second. The ChArUco board view
//! bounds how fast `smp calibrate sim` can make its views.
//!
//! Run with `cargo bench -p smp-sim --bench render`.

use criterion::{criterion_group, criterion_main, Criterion};
use smp_core::rig::Rig;
use smp_sim::charuco::{render_board, CharucoBoard};
use smp_sim::patient::{up_direction_head, PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::render::{render_flange_view, render_overview, render_view, RenderConfig};

fn bench_render(c: &mut Criterion) {
    let Ok(spec) = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML) else {
        eprintln!("the embedded default patient does not parse; run `cargo test -p smp-sim`");
        return;
    };
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let cfg = RenderConfig::default();

    let mut group = c.benchmark_group("smp-sim");
    group.sample_size(10);
    group.bench_function("generate default patient", |b| b.iter(|| SyntheticPatient::generate(&spec)));

    let patient = SyntheticPatient::generate(&spec);
    // A tile over the up-facing crown: the scan's typical view.
    let up = up_direction_head(&base_from_head);
    let top = base_from_head * patient.ellipsoid().point_in_direction(&up);
    let machine = rig.machine_for_camera_over_xyz([top.x + 10.0, top.y + 8.0, top.z]);
    group.bench_function("flange tile 800x600", |b| {
        b.iter(|| render_flange_view(&patient, &rig, &base_from_head, machine, "bench", &cfg))
    });
    group.bench_function("overview 1280x960", |b| b.iter(|| render_overview(&patient, &rig, &base_from_head, &cfg)));

    // 12 Mpx close-up: the flange camera scaled 5x in pixels (same field of view).
    let mut big = rig.flange_camera.intrinsics;
    let scale = 5.0;
    (big.width_px, big.height_px) = (4000, 3000);
    (big.fx_px, big.fy_px, big.cx_px, big.cy_px) = (big.fx_px * scale, big.fy_px * scale, 2000.0, 1500.0);
    let base_from_camera = rig.base_from_flange_camera_xyz(machine);
    let render_big = || render_view(&patient, &big, &base_from_camera, &base_from_head, "bench12", &cfg);
    // Warm the ray table (built once per camera model), then one timed render for the figure.
    std::hint::black_box(render_big());
    let t = std::time::Instant::now();
    std::hint::black_box(render_big());
    let s = t.elapsed().as_secs_f64();
    println!("12 Mpx close-up 4000x3000: {s:.3} s, {:.1} Mpx/s", 12.0 / s.max(1e-9));
    group.bench_function("close-up 4000x3000 (12 Mpx)", |b| b.iter(render_big));

    if let Ok(board) = CharucoBoard::default_board() {
        let (bw, bh) = board.size_mm();
        let camera_from_board = nalgebra::Isometry3::translation(-0.5 * bw, -0.5 * bh, 90.0);
        let intr = rig.flange_camera.intrinsics;
        group.bench_function("charuco board 800x600", |b| {
            b.iter(|| render_board(&board, &intr, &camera_from_board, &cfg))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
