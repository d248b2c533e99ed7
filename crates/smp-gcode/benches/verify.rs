//! Compile + verify of a ~3000-dot session plan (the size of a session-1 crown fill): the
//! verifier runs before every session, so it must stay well under a second.

use criterion::{criterion_group, criterion_main, Criterion};
use smp_gcode::{compile, verify};
use smp_testkit::synthetic_case;

fn bench_verify(c: &mut Criterion) {
    let case = synthetic_case(3000);
    let program = compile(&case.plan, &case.rig, &case.base_from_head).expect("synthetic plan compiles");
    let mut group = c.benchmark_group("gcode_3000_dots");
    group.sample_size(10);
    group.bench_function("compile", |b| {
        b.iter(|| compile(&case.plan, &case.rig, &case.base_from_head).expect("compiles"))
    });
    group.bench_function("verify", |b| {
        b.iter(|| verify(program.clone(), &case.plan, &case.map, &case.rig, &case.base_from_head).expect("verifies"))
    });
    group.bench_function("compile_and_verify", |b| {
        b.iter(|| {
            let p = compile(&case.plan, &case.rig, &case.base_from_head).expect("compiles");
            verify(p, &case.plan, &case.map, &case.rig, &case.base_from_head).expect("verifies")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
