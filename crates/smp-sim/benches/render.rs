//! Rendering speed of the simulated cameras: the simulator's share of `smp demo`'s wall time
//! (15-30 flange tiles and one overview per run). Target: < 0.3 s per tile on one core.
//!
//! Run with `cargo bench -p smp-sim --bench render`.

use criterion::{criterion_group, criterion_main, Criterion};
use smp_core::rig::Rig;
use smp_sim::patient::{up_direction_head, PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::render::{render_flange_view, render_overview, RenderConfig};

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
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
