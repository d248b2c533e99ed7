//! Deterministic pixel noise for the detector's unit tests: reproducible without a RNG crate.

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
