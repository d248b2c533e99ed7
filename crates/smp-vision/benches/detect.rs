//! Follicle detection speed (issue 4's target: 50 megapixels per second or more on the
//! 2-core machine): follicle detection as the map runs it (both polarities, `auto`) and
//! dark-dot detection alone on a 12-megapixel close-up of the default patient's crown, and
//! the whole map (detection, surface fit, regions, tone) from a scan's tiles.
//! Each group reports throughput in pixels, which criterion prints as elements/s.
//!
//! Run with `cargo bench -p smp-vision --bench detect`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smp_core::rig::Rig;
use smp_sim::patient::{up_direction_head, PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::render::{render_flange_view, render_view, RenderConfig};
use smp_vision::VisionConfig;

fn bench_detect(c: &mut Criterion) {
    let Ok(spec) = PatientSpec::from_toml_str(DEFAULT_PATIENT_TOML) else {
        eprintln!("the embedded default patient does not parse; run `cargo test -p smp-sim`");
        return;
    };
    let rig = Rig::default_sim();
    let bfh = rig.base_from_head_nominal();
    let cfg = RenderConfig::default();
    let patient = SyntheticPatient::generate(&spec);
    let up = up_direction_head(&bfh);
    let top = bfh * patient.ellipsoid().point_in_direction(&up);
    let vision = VisionConfig::default();

    // The 12 Mpx close-up: the flange camera scaled 5x in pixels (same field of view).
    let machine = rig.machine_for_camera_over_xyz([top.x + 10.0, top.y + 8.0, top.z]);
    let mut big = rig.flange_camera.intrinsics;
    (big.width_px, big.height_px) = (4000, 3000);
    (big.fx_px, big.fy_px, big.cx_px, big.cy_px) = (big.fx_px * 5.0, big.fy_px * 5.0, 2000.0, 1500.0);
    let view = render_view(&patient, &big, &rig.base_from_flange_camera_xyz(machine), &bfh, "bench12", &cfg);
    let gray = view.image.to_gray();
    // A 0.3 mm follicle at the stand-off, in pixels of this camera.
    let d_px = vision.follicle_diameter_mm * big.fx_px / rig.flange_camera.standoff_mm;
    let mut group = c.benchmark_group("smp-vision");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(gray.width) * u64::from(gray.height)));
    group.bench_function("detect dots (both polarities), 12 Mpx close-up", |b| {
        b.iter(|| smp_vision::detect_dots(&gray, d_px, &vision, "bench12"))
    });
    group.bench_function("detect dark dots, 12 Mpx close-up", |b| {
        b.iter(|| smp_vision::detect_dark_dots(&gray, d_px, &vision, "bench12"))
    });

    // One tile of the rig's own 800 x 600 flange camera at its native resolution (follicle
    // ~7.5 px, no downsampling): the throughput the map's detection actually runs at.
    let m = rig.machine_for_camera_over_xyz([top.x + 10.0, top.y + 8.0, top.z]);
    let tile = render_flange_view(&patient, &rig, &bfh, m, "tile", &cfg);
    let tile_gray = tile.image.to_gray();
    let tile_d_px = vision.follicle_diameter_mm * rig.flange_camera.intrinsics.fx_px / rig.flange_camera.standoff_mm;
    group.throughput(Throughput::Elements(u64::from(tile_gray.width) * u64::from(tile_gray.height)));
    group.bench_function("detect dots (both polarities), one 0.48 Mpx tile", |b| {
        b.iter(|| smp_vision::detect_dots(&tile_gray, tile_d_px, &vision, "tile"))
    });
    group.bench_function("detect dark dots, one 0.48 Mpx tile", |b| {
        b.iter(|| smp_vision::detect_dark_dots(&tile_gray, tile_d_px, &vision, "tile"))
    });

    // The map from 8 tiles of the rig's own 800 x 600 camera around the crown.
    let tiles: Vec<_> = (0..8)
        .map(|k| {
            let (dx, dy) = (f64::from(k % 4) * 14.0 - 21.0, f64::from(k / 4) * 10.0 - 5.0);
            let m = rig.machine_for_camera_over_xyz([top.x + dx, top.y + dy, top.z]);
            render_flange_view(&patient, &rig, &bfh, m, &format!("tile{k}"), &cfg)
        })
        .collect();
    let pixels: u64 = tiles.iter().map(|t| u64::from(t.image.width) * u64::from(t.image.height)).sum();
    group.throughput(Throughput::Elements(pixels));
    group.bench_function("build map from 8 tiles (3.8 Mpx)", |b| {
        b.iter(|| smp_vision::build_map(&tiles, None, &bfh, &vision))
    });
    group.finish();
}

criterion_group!(benches, bench_detect);
criterion_main!(benches);
