//! Deterministic pixel noise and dot layouts for the detector's unit tests: reproducible
//! without a RNG crate.

/// One noise sample: the sum of four uniforms on [-0.5, 0.5] (standard deviation
/// `sqrt(4 / 12)` = 0.577), each quantised to `1 / steps`, from an xorshift `state`.
pub(crate) fn sum_of_four_uniforms(state: &mut u64, steps: u64) -> f64 {
    let mut acc = 0.0;
    for _ in 0..4 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        acc += (*state % steps) as f64 / steps as f64 - 0.5;
    }
    acc
}

/// Centres on a `spacing` grid 20 px inside a `w` x `h` image, each jittered by up to ±3 px
/// from a linear congruential sequence started at `seed`.
pub(crate) fn jittered_grid(w: f64, h: f64, spacing: f64, seed: u32) -> Vec<[f64; 2]> {
    let mut out = Vec::new();
    let mut k = seed;
    let mut y = 20.0;
    while y < h - 20.0 {
        let mut x = 20.0;
        while x < w - 20.0 {
            k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let jx = f64::from((k >> 8) % 1000) / 1000.0 * 6.0 - 3.0;
            let jy = f64::from((k >> 18) % 1000) / 1000.0 * 6.0 - 3.0;
            out.push([x + jx, y + jy]);
            x += spacing;
        }
        y += spacing;
    }
    out
}
