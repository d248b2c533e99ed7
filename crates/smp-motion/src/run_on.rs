//! How far a Marlin "pause" can run on. Marlin has no feed hold the executor can rely on
//! (`P000`, its quick pause, exists only with `REALTIME_REPORTING_COMMANDS` and the emergency
//! parser): a pause only stops feeding lines, and the lines already sent (up to
//! `marlin_max_in_flight`, Marlin's `BUFSIZE`) still run, plunges and dwells included. The
//! executor says so at the start of every Marlin run, with the worst case of this program,
//! instead of pretending to hold.

use smp_gcode::{LineRole, Program};

/// The worst stretch of `window` consecutive sent lines of a program.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PauseRunOn {
    /// Lines a pause lets run (Marlin's queue).
    pub lines: usize,
    /// Longest time those lines take, seconds, at their programmed feeds (acceleration
    /// ignored: the real time is a little longer).
    pub seconds: f64,
    /// Longest tip travel those lines make, mm.
    pub travel_mm: f64,
    /// Most plunges among them.
    pub plunges: usize,
    /// 1-based program line where the longest-time stretch starts.
    pub worst_line: usize,
    /// A move started from a position the program does not give (the first moves, from
    /// wherever the arm is): it is not counted, and may run on longer than `seconds`.
    pub first_moves_uncounted: bool,
}

/// Value of the word `letter` in a G-code line (`G1 X1.5 F600` -> `X` = 1.5).
fn word(text: &str, letter: char) -> Option<f64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(letter).or_else(|| w.strip_prefix(letter.to_ascii_lowercase())))
        .and_then(|v| v.parse().ok())
}

/// Duration (s) and travel (mm) of each line, tracking position and modal feed of an `xyz`
/// program (other profiles: X Y Z are still the first three axes; rotary motion is ignored).
fn line_costs(program: &Program) -> (Vec<(usize, f64, f64, bool)>, bool) {
    let mut uncounted = false;
    let mut pos: Option<[f64; 3]> = None;
    let mut feed_mm_per_min: Option<f64> = None;
    let mut out = Vec::new();
    for (i, line) in program.lines.iter().enumerate() {
        let text = line.text.split(['(', ';']).next().unwrap_or("").trim();
        if text.is_empty() {
            continue; // comments are not sent to Marlin
        }
        if let Some(f) = word(text, 'F').filter(|f| *f > 0.0) {
            feed_mm_per_min = Some(f);
        }
        let g = word(text, 'G').map(|g| g.round() as i64);
        let (mut seconds, mut travel) = (0.0, 0.0);
        if g == Some(4) {
            seconds = word(text, 'P').unwrap_or(0.0).max(0.0);
        } else if matches!(g, Some(0 | 1)) {
            let target = {
                let p = pos.unwrap_or([f64::NAN; 3]);
                [word(text, 'X').unwrap_or(p[0]), word(text, 'Y').unwrap_or(p[1]), word(text, 'Z').unwrap_or(p[2])]
            };
            let d = pos.map_or(f64::NAN, |p| (0..3).map(|k| (target[k] - p[k]).powi(2)).sum::<f64>().sqrt());
            if d.is_finite() {
                travel = d;
                seconds = feed_mm_per_min.map_or(0.0, |f| d / (f / 60.0));
            } else {
                uncounted = true;
            }
            if target.iter().all(|v| v.is_finite()) {
                pos = Some(target);
            }
        }
        out.push((i + 1, seconds, travel, line.role == LineRole::Plunge));
    }
    (out, uncounted)
}

/// The worst case of a pause that lets `window` sent lines run on.
pub fn pause_run_on(program: &Program, window: usize) -> PauseRunOn {
    let (costs, first_moves_uncounted) = line_costs(program);
    let window = window.max(1);
    let mut worst =
        PauseRunOn { lines: window, seconds: 0.0, travel_mm: 0.0, plunges: 0, worst_line: 1, first_moves_uncounted };
    for stretch in costs.windows(window.min(costs.len().max(1))) {
        let seconds: f64 = stretch.iter().map(|c| c.1).sum();
        let travel: f64 = stretch.iter().map(|c| c.2).sum();
        let plunges = stretch.iter().filter(|c| c.3).count();
        if seconds > worst.seconds {
            worst.seconds = seconds;
            worst.worst_line = stretch[0].0;
        }
        worst.travel_mm = worst.travel_mm.max(travel);
        worst.plunges = worst.plunges.max(plunges);
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp_gcode::ProgramLine;

    fn line(text: &str, role: LineRole) -> ProgramLine {
        ProgramLine { text: text.into(), dot_id: None, role }
    }

    #[test]
    fn the_worst_stretch_of_sent_lines_is_found() {
        let program = Program {
            session: 1,
            lines: vec![
                line("(header)", LineRole::Setup),
                line("G1 X0 Y0 Z10 F600", LineRole::Setup),
                line("M3 S9000", LineRole::Setup),
                line("G1 X30 Y40 F3000", LineRole::Travel), // 50 mm at 50 mm/s: 1 s
                line("G1 Z8 F600", LineRole::Plunge),       // 2 mm at 10 mm/s: 0.2 s
                line("G4 P0.5", LineRole::Dwell),
                line("G1 Z10 F1200", LineRole::Retract), // 0.1 s
            ],
        };
        let r = pause_run_on(&program, 4);
        assert!((r.seconds - 1.8).abs() < 1e-9, "{r:?}");
        assert_eq!(r.worst_line, 4);
        assert!((r.travel_mm - 54.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.plunges, 1);
        assert!(r.first_moves_uncounted, "the first move starts from wherever the arm is");
        let r = pause_run_on(&program, 1);
        assert!((r.seconds - 1.0).abs() < 1e-9);
        let empty = pause_run_on(&Program { session: 1, lines: Vec::new() }, 4);
        assert!(empty.seconds == 0.0 && !empty.first_moves_uncounted);
    }
}
