//! grbl 1.1's g-code block parser, reduced to what the simulator supports.
//!
//! The parser follows grbl's `gc_execute_line` closely: words are read with grbl's own number
//! reader (at most 8 significant digits, no exponent), checked for modal-group violations and
//! repeats as they are read, then error-checked as a block in grbl's order, and only then
//! applied to the modal state. A block that fails leaves the modal state untouched, as in
//! grbl. The physical effects (spindle, dwell, motion, pause) come back as [`Op`]s that the
//! controller executes in order, because grbl synchronises some of them with the planner.
//!
//! Not supported (answered `error:20`, where real grbl would act): arcs (G2/G3), probing
//! (G38.x), G10/G28/G30/G92 offsets and stored positions, inverse-time feed (G93), dynamic
//! tool length offsets (G43.1). Work coordinate systems G54-G59 are accepted but all have
//! zero offsets, so work and machine coordinates coincide.

use super::axes::{MachinePos, MAX_AXES};
use super::codes;

/// Maximum significant digits grbl's `read_float` keeps (`MAX_INT_DIGITS`).
const MAX_INT_DIGITS: u32 = 8;
/// grbl's `MAX_LINE_NUMBER`.
const MAX_LINE_NUMBER: f64 = 10_000_000.0;
/// grbl's `MAX_TOOL_NUMBER`.
const MAX_TOOL_NUMBER: f64 = 255.0;
const MM_PER_INCH: f64 = 25.4;

/// Spindle (needle cartridge) direction as g-code commands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpindleDir {
    Off,
    /// M3.
    Cw,
    /// M4.
    Ccw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MotionMode {
    /// G0.
    Seek,
    /// G1.
    Linear,
    /// G80.
    None,
}

/// grbl's `gc_state`: the modal state of the parser and its idea of the tool position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GcState {
    pub(crate) motion: MotionMode,
    /// 17, 18 or 19.
    pub(crate) plane: u8,
    pub(crate) inches: bool,
    pub(crate) incremental: bool,
    /// 54..=59 (all offsets are zero).
    pub(crate) wcs: u8,
    pub(crate) spindle: SpindleDir,
    pub(crate) coolant_flood: bool,
    pub(crate) coolant_mist: bool,
    pub(crate) feed_mm_per_min: f64,
    pub(crate) spindle_rpm: f64,
    pub(crate) tool: u8,
    /// Where the parser believes the tool is (end of the last queued motion), machine units.
    pub(crate) position_mm: MachinePos,
}

/// The axis words a profile accepts: `X Y Z` (3), `X Y Z A B` (5) or `X Y Z A B C` (6), and
/// which of them are lengths (scaled by G20) rather than angles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AxisWords {
    pub(crate) count: usize,
    pub(crate) linear: [bool; MAX_AXES],
}

impl AxisWords {
    /// Stock grbl: X Y Z in mm.
    #[cfg(test)]
    pub(crate) const XYZ: AxisWords = AxisWords { count: 3, linear: [true, true, true, false, false, false] };
}

impl GcState {
    /// grbl's `gc_init` followed by `gc_sync_position`.
    pub(crate) fn new(position_mm: MachinePos) -> Self {
        GcState {
            motion: MotionMode::Seek,
            plane: 17,
            inches: false,
            incremental: false,
            wcs: 54,
            spindle: SpindleDir::Off,
            coolant_flood: false,
            coolant_mist: false,
            feed_mm_per_min: 0.0,
            spindle_rpm: 0.0,
            tool: 0,
            position_mm,
        }
    }

    /// The `[GC:...]` line of `$G`, without the line ending.
    pub(crate) fn modes_report(&self) -> String {
        let motion = match self.motion {
            MotionMode::Seek => "G0",
            MotionMode::Linear => "G1",
            MotionMode::None => "G80",
        };
        let spindle = match self.spindle {
            SpindleDir::Cw => "M3",
            SpindleDir::Ccw => "M4",
            SpindleDir::Off => "M5",
        };
        let coolant = match (self.coolant_mist, self.coolant_flood) {
            (false, false) => "M9".to_string(),
            (m, f) => format!("M{}{}", if m { "7" } else { "" }, if f { "8" } else { "" }),
        };
        format!(
            "[GC:{motion} G{} G{} G{} G{} G94 {spindle} {coolant} T{} F{} S{}]",
            self.wcs,
            self.plane,
            if self.inches { 20 } else { 21 },
            if self.incremental { 91 } else { 90 },
            self.tool,
            fmt0(self.feed_mm_per_min),
            fmt0(self.spindle_rpm),
        )
    }
}

/// A physical effect of one g-code block, executed by the controller in this order, which is
/// grbl's order of execution inside `gc_execute_line`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// Set the spindle (synchronises: waits until the planner has drained).
    Spindle { dir: SpindleDir, rpm: f64 },
    /// Set the coolant (synchronises; no physical effect in the simulator).
    Coolant,
    /// G4: synchronise, then wait.
    Dwell { seconds: f64 },
    /// G0/G1 to a machine target; `feed_mm_per_min` is `None` for a rapid.
    Line { target_mm: MachinePos, feed_mm_per_min: Option<f64> },
    /// M0: synchronise, then feed hold until cycle start.
    Pause,
    /// M2/M30: synchronise, spindle off, `[MSG:Pgm End]`.
    ProgramEnd,
}

/// grbl's `read_float`: optional sign, digits with at most one decimal point, at least one
/// digit; digits beyond the eighth significant one are dropped. Advances `i` past the number.
pub(crate) fn read_float(line: &[u8], i: &mut usize) -> Option<f64> {
    let mut p = *i;
    let mut negative = false;
    match line.get(p) {
        Some(b'-') => {
            negative = true;
            p += 1;
        }
        Some(b'+') => p += 1,
        _ => {}
    }
    let mut intval: u64 = 0;
    let mut exp: i32 = 0;
    let mut ndigit: u32 = 0;
    let mut decimal = false;
    while let Some(&c) = line.get(p) {
        if c.is_ascii_digit() {
            ndigit += 1;
            if ndigit <= MAX_INT_DIGITS {
                if decimal {
                    exp -= 1;
                }
                intval = intval * 10 + u64::from(c - b'0');
            } else if !decimal {
                exp += 1; // drop overflow digits, keep the magnitude
            }
        } else if c == b'.' && !decimal {
            decimal = true;
        } else {
            break;
        }
        p += 1;
    }
    if ndigit == 0 {
        return None;
    }
    // Dividing by an exact power of ten rounds correctly; multiplying by 10^-n would not.
    let magnitude = intval as f64;
    let mut value = if exp < 0 { magnitude / 10f64.powi(-exp) } else { magnitude * 10f64.powi(exp) };
    if negative {
        value = -value;
    }
    *i = p;
    Some(value)
}

// Modal groups (bits of `command_words`), as numbered in grbl's gcode.h.
const MG_G0: u16 = 1 << 0; // non-modal: G4, G53
const MG_G1: u16 = 1 << 1; // motion
const MG_G2: u16 = 1 << 2; // plane
const MG_G3: u16 = 1 << 3; // distance
const MG_G4: u16 = 1 << 4; // arc IJK distance (G91.1)
const MG_G5: u16 = 1 << 5; // feed rate mode
const MG_G6: u16 = 1 << 6; // units
const MG_G7: u16 = 1 << 7; // cutter radius compensation (G40)
const MG_G8: u16 = 1 << 8; // tool length offset (G49)
const MG_G12: u16 = 1 << 9; // work coordinate system
const MG_G13: u16 = 1 << 10; // path control (G61)
const MG_M4: u16 = 1 << 11; // program flow
const MG_M7: u16 = 1 << 12; // spindle
const MG_M8: u16 = 1 << 13; // coolant

// Value words (bits of `value_words`).
const W_F: u16 = 1 << 0;
const W_I: u16 = 1 << 1;
const W_J: u16 = 1 << 2;
const W_K: u16 = 1 << 3;
const W_L: u16 = 1 << 4;
const W_N: u16 = 1 << 5;
const W_P: u16 = 1 << 6;
const W_R: u16 = 1 << 7;
const W_S: u16 = 1 << 8;
const W_T: u16 = 1 << 9;
const W_X: u16 = 1 << 10;
const W_Y: u16 = 1 << 11;
const W_Z: u16 = 1 << 12;
const W_A: u16 = 1 << 13;
const W_B: u16 = 1 << 14;
const W_C: u16 = 1 << 15;
/// The axis words' bits, in axis order.
const W_AXES: [u16; MAX_AXES] = [W_X, W_Y, W_Z, W_A, W_B, W_C];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonModal {
    None,
    Dwell,
    AbsoluteOverride,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Running,
    Paused,
    Completed,
}

/// Parses and applies one pre-filtered line (upper case, no spaces or comments, as grbl's
/// protocol loop hands it over). On success the modal state is updated and the physical
/// effects are returned in execution order; on failure the grbl status code is returned and
/// the state is unchanged. Axis letters beyond `axes.count` are unknown words (`error:20`), as
/// on a grbl built for that many axes.
pub(crate) fn execute_line(gc: &mut GcState, line: &[u8], axes: AxisWords) -> Result<Vec<Op>, u8> {
    // STEP 1/2: read words, checking modal groups and repeats as grbl does.
    let mut next = gc.clone();
    let mut command_words: u16 = 0;
    let mut value_words: u16 = 0;
    let mut axis_words: u8 = 0;
    let mut axis_command = false;
    let mut non_modal = NonModal::None;
    let mut flow = Flow::Running;
    let mut f_word = 0.0;
    let mut n_word = 0.0;
    let mut p_word = 0.0;
    let mut s_word = 0.0;
    let mut t_word: u8 = 0;
    let mut xyz_word = [0.0f64; MAX_AXES];
    let mut coolant_word: Option<(bool, bool)> = None;

    let mut i = 0;
    while i < line.len() {
        let letter = line[i];
        if !letter.is_ascii_uppercase() {
            return Err(codes::ERROR_EXPECTED_COMMAND_LETTER);
        }
        i += 1;
        let value = read_float(line, &mut i).ok_or(codes::ERROR_BAD_NUMBER_FORMAT)?;
        let int_part = value.trunc();
        let mut mantissa = (100.0 * (value - int_part)).round() as i64;
        match letter {
            b'G' => {
                // grbl stores the integer part in a uint8; out-of-range values are not commands.
                if !(0.0..256.0).contains(&value) {
                    return Err(codes::ERROR_UNSUPPORTED_COMMAND);
                }
                let group = match int_part as u8 {
                    4 => {
                        non_modal = NonModal::Dwell;
                        MG_G0
                    }
                    53 => {
                        non_modal = NonModal::AbsoluteOverride;
                        MG_G0
                    }
                    code @ (0 | 1) => {
                        if axis_command {
                            return Err(codes::ERROR_AXIS_COMMAND_CONFLICT);
                        }
                        axis_command = true;
                        next.motion = if code == 0 { MotionMode::Seek } else { MotionMode::Linear };
                        MG_G1
                    }
                    80 => {
                        next.motion = MotionMode::None;
                        MG_G1
                    }
                    code @ (17..=19) => {
                        next.plane = code;
                        MG_G2
                    }
                    code @ (90 | 91) => {
                        if mantissa == 0 {
                            next.incremental = code == 91;
                            MG_G3
                        } else {
                            // G91.1 (IJK incremental) is grbl's default and does nothing; G90.1 is not supported.
                            if mantissa != 10 || code == 90 {
                                return Err(codes::ERROR_UNSUPPORTED_COMMAND);
                            }
                            mantissa = 0;
                            MG_G4
                        }
                    }
                    94 => MG_G5,
                    code @ (20 | 21) => {
                        next.inches = code == 20;
                        MG_G6
                    }
                    40 => MG_G7,
                    49 => MG_G8,
                    code @ (54..=59) => {
                        next.wcs = code;
                        MG_G12
                    }
                    61 => MG_G13,
                    // G2/G3, G10, G28, G30, G38.x, G43.1, G92, G93 and the rest: not simulated.
                    _ => return Err(codes::ERROR_UNSUPPORTED_COMMAND),
                };
                if mantissa > 0 {
                    return Err(codes::ERROR_COMMAND_VALUE_NOT_INTEGER);
                }
                if command_words & group != 0 {
                    return Err(codes::ERROR_MODAL_GROUP_VIOLATION);
                }
                command_words |= group;
            }
            b'M' => {
                if mantissa > 0 {
                    return Err(codes::ERROR_COMMAND_VALUE_NOT_INTEGER);
                }
                if !(0.0..256.0).contains(&value) {
                    return Err(codes::ERROR_UNSUPPORTED_COMMAND);
                }
                let group = match int_part as u8 {
                    0 => {
                        flow = Flow::Paused;
                        MG_M4
                    }
                    1 => MG_M4, // optional stop: grbl ignores it
                    2 | 30 => {
                        flow = Flow::Completed;
                        MG_M4
                    }
                    3 => {
                        next.spindle = SpindleDir::Cw;
                        MG_M7
                    }
                    4 => {
                        next.spindle = SpindleDir::Ccw;
                        MG_M7
                    }
                    5 => {
                        next.spindle = SpindleDir::Off;
                        MG_M7
                    }
                    code @ (7..=9) => {
                        let (mist, flood) = coolant_word.unwrap_or((gc.coolant_mist, gc.coolant_flood));
                        // M7 is compiled out of default grbl (ENABLE_M7): accepted, no effect.
                        coolant_word = Some(match code {
                            8 => (mist, true),
                            9 => (false, false),
                            _ => (mist, flood),
                        });
                        MG_M8
                    }
                    _ => return Err(codes::ERROR_UNSUPPORTED_COMMAND),
                };
                if command_words & group != 0 {
                    return Err(codes::ERROR_MODAL_GROUP_VIOLATION);
                }
                command_words |= group;
            }
            _ => {
                let word = match letter {
                    b'F' => {
                        f_word = value;
                        W_F
                    }
                    b'I' => W_I,
                    b'J' => W_J,
                    b'K' => W_K,
                    b'L' => W_L,
                    b'N' => {
                        n_word = value.trunc();
                        W_N
                    }
                    b'P' => {
                        p_word = value;
                        W_P
                    }
                    b'R' => W_R,
                    b'S' => {
                        s_word = value;
                        W_S
                    }
                    b'T' => {
                        if value > MAX_TOOL_NUMBER {
                            return Err(codes::ERROR_MAX_VALUE_EXCEEDED);
                        }
                        t_word = if value > 0.0 { value as u8 } else { 0 };
                        W_T
                    }
                    b'X' => {
                        xyz_word[0] = value;
                        axis_words |= 1;
                        W_X
                    }
                    b'Y' => {
                        xyz_word[1] = value;
                        axis_words |= 2;
                        W_Y
                    }
                    b'Z' => {
                        xyz_word[2] = value;
                        axis_words |= 4;
                        W_Z
                    }
                    b'A' | b'B' | b'C' => {
                        let axis = usize::from(letter - b'A') + 3;
                        if axis >= axes.count {
                            return Err(codes::ERROR_UNSUPPORTED_COMMAND);
                        }
                        xyz_word[axis] = value;
                        axis_words |= 1 << axis;
                        W_AXES[axis]
                    }
                    _ => return Err(codes::ERROR_UNSUPPORTED_COMMAND),
                };
                if value_words & word != 0 {
                    return Err(codes::ERROR_WORD_REPEATED);
                }
                if word & (W_F | W_N | W_P | W_T | W_S) != 0 && value < 0.0 {
                    return Err(codes::ERROR_NEGATIVE_VALUE);
                }
                value_words |= word;
            }
        }
    }

    // STEP 3: error-check the block, in grbl's order.
    if axis_words != 0 && !axis_command {
        axis_command = true; // implicit: axis words use the current motion mode
    }
    if value_words & W_N != 0 && n_word > MAX_LINE_NUMBER {
        return Err(codes::ERROR_INVALID_LINE_NUMBER);
    }
    let feed_mm_per_min = if value_words & W_F != 0 {
        if next.inches {
            f_word * MM_PER_INCH
        } else {
            f_word
        }
    } else {
        gc.feed_mm_per_min
    };
    let spindle_rpm = if value_words & W_S != 0 { s_word } else { gc.spindle_rpm };
    if non_modal == NonModal::Dwell {
        if value_words & W_P == 0 {
            return Err(codes::ERROR_VALUE_WORD_MISSING);
        }
        value_words &= !W_P;
    }
    if next.inches {
        for (v, linear) in xyz_word.iter_mut().zip(axes.linear) {
            if linear {
                *v *= MM_PER_INCH;
            }
        }
    }
    if non_modal == NonModal::AbsoluteOverride && !matches!(next.motion, MotionMode::Seek | MotionMode::Linear) {
        return Err(codes::ERROR_G53_INVALID_MOTION_MODE);
    }
    let mut target = gc.position_mm;
    if axis_command {
        for (axis, t) in target.iter_mut().enumerate() {
            if axis_words & (1 << axis) != 0 {
                *t = if non_modal == NonModal::AbsoluteOverride || !next.incremental {
                    xyz_word[axis] // every work offset is zero
                } else {
                    gc.position_mm[axis] + xyz_word[axis]
                };
            }
        }
    }
    match next.motion {
        MotionMode::None => {
            if axis_words != 0 {
                return Err(codes::ERROR_AXIS_WORDS_EXIST);
            }
        }
        MotionMode::Seek => {
            if axis_command && axis_words == 0 {
                axis_command = false;
            }
        }
        MotionMode::Linear => {
            if axis_command {
                if feed_mm_per_min == 0.0 {
                    return Err(codes::ERROR_UNDEFINED_FEED_RATE);
                }
                if axis_words == 0 {
                    axis_command = false;
                }
            }
        }
    }
    value_words &= !(W_N | W_F | W_S | W_T);
    if axis_command {
        value_words &= !(W_X | W_Y | W_Z | W_A | W_B | W_C);
    }
    if value_words != 0 {
        return Err(codes::ERROR_UNUSED_WORDS);
    }

    // STEP 4: apply, collecting the physical effects in grbl's execution order.
    let mut ops = Vec::new();
    next.feed_mm_per_min = feed_mm_per_min;
    if gc.spindle_rpm != spindle_rpm && gc.spindle != SpindleDir::Off {
        ops.push(Op::Spindle { dir: gc.spindle, rpm: spindle_rpm });
    }
    next.spindle_rpm = spindle_rpm;
    // grbl copies the block's T value (0 when absent) into the state on every block.
    next.tool = t_word;
    if next.spindle != gc.spindle {
        ops.push(Op::Spindle { dir: next.spindle, rpm: spindle_rpm });
    }
    if let Some((mist, flood)) = coolant_word {
        if (mist, flood) != (gc.coolant_mist, gc.coolant_flood) {
            ops.push(Op::Coolant);
        }
        next.coolant_mist = mist;
        next.coolant_flood = flood;
    }
    if non_modal == NonModal::Dwell {
        ops.push(Op::Dwell { seconds: p_word });
    }
    if next.motion != MotionMode::None && axis_command {
        let feed = match next.motion {
            MotionMode::Linear => Some(feed_mm_per_min),
            _ => None,
        };
        ops.push(Op::Line { target_mm: target, feed_mm_per_min: feed });
        next.position_mm = target;
    }
    match flow {
        Flow::Running => {}
        Flow::Paused => ops.push(Op::Pause),
        Flow::Completed => {
            // LinuxCNC's program-end subset, as grbl resets it.
            next.motion = MotionMode::Linear;
            next.plane = 17;
            next.incremental = false;
            next.wcs = 54;
            next.spindle = SpindleDir::Off;
            next.coolant_flood = false;
            next.coolant_mist = false;
            ops.push(Op::ProgramEnd);
        }
    }
    *gc = next;
    Ok(ops)
}

/// A number printed with no decimals, as grbl's `printFloat(x, 0)`, never as `-0`.
pub(crate) fn fmt0(v: f64) -> String {
    let r = v.round();
    format!("{:.0}", if r == 0.0 { 0.0 } else { r })
}

/// A number printed with three decimals, as grbl's coordinate and setting values, never `-0.000`.
pub(crate) fn fmt3(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    format!("{:.3}", if r == 0.0 { 0.0 } else { r })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(gc: &mut GcState, line: &str) -> Result<Vec<Op>, u8> {
        execute_line(gc, line.as_bytes(), AxisWords::XYZ)
    }

    fn at(p: [f64; 3]) -> MachinePos {
        [p[0], p[1], p[2], 0.0, 0.0, 0.0]
    }

    #[test]
    fn rotary_words_only_where_the_profile_has_them() {
        let five = AxisWords { count: 5, linear: [true, true, true, false, false, false] };
        let six = AxisWords { count: 6, linear: [false; MAX_AXES] };
        let mut gc = GcState::new([0.0; MAX_AXES]);
        assert_eq!(run(&mut gc, "G1X1A5F100"), Err(codes::ERROR_UNSUPPORTED_COMMAND), "stock grbl: A is unknown");
        assert_eq!(execute_line(&mut gc, b"G1X1C5F100", five), Err(codes::ERROR_UNSUPPORTED_COMMAND));
        let ops = execute_line(&mut gc, b"G20G1X1A5B-2F100", five).unwrap();
        // Inches scale X, never the angles.
        assert_eq!(ops, vec![Op::Line { target_mm: [25.4, 0.0, 0.0, 5.0, -2.0, 0.0], feed_mm_per_min: Some(2540.0) }]);
        assert_eq!(execute_line(&mut gc, b"G91A1A2", five), Err(codes::ERROR_WORD_REPEATED));
        let mut gc = GcState::new([0.0; MAX_AXES]);
        let ops = execute_line(&mut gc, b"G20G1X1Y2Z3A4B5C6F60", six).unwrap();
        assert_eq!(ops, vec![Op::Line { target_mm: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], feed_mm_per_min: Some(1524.0) }]);
        assert_eq!(execute_line(&mut gc, b"G80C1", six), Err(codes::ERROR_AXIS_WORDS_EXIST));
    }

    #[test]
    fn read_float_follows_grbl() {
        let parse = |s: &str| {
            let mut i = 0;
            read_float(s.as_bytes(), &mut i).map(|v| (v, i))
        };
        assert_eq!(parse("10.5X"), Some((10.5, 4)));
        assert_eq!(parse("-.5"), Some((-0.5, 3)));
        assert_eq!(parse("+3"), Some((3.0, 2)));
        assert_eq!(parse("."), None);
        assert_eq!(parse("-"), None);
        assert_eq!(parse("X"), None);
        // "1.2.3": the second point ends the number.
        assert_eq!(parse("1.2.3"), Some((1.2, 3)));
        // Only 8 significant digits survive.
        assert_eq!(parse("123.456789"), Some((123.45678, 10)));
        assert_eq!(parse("1234567891"), Some((1_234_567_800.0, 10)));
        assert_eq!(parse("12.345"), Some((12.345, 6)));
    }

    #[test]
    fn moves_and_modal_feed() {
        let mut gc = GcState::new([0.0; MAX_AXES]);
        assert_eq!(run(&mut gc, "G1X10"), Err(codes::ERROR_UNDEFINED_FEED_RATE));
        assert_eq!(gc.feed_mm_per_min, 0.0, "failed block leaves state unchanged");
        let ops = run(&mut gc, "G1X10F600").unwrap();
        assert_eq!(ops, vec![Op::Line { target_mm: at([10.0, 0.0, 0.0]), feed_mm_per_min: Some(600.0) }]);
        let ops = run(&mut gc, "Y5").unwrap(); // modal G1 and F
        assert_eq!(ops, vec![Op::Line { target_mm: at([10.0, 5.0, 0.0]), feed_mm_per_min: Some(600.0) }]);
        let ops = run(&mut gc, "G0Z3").unwrap();
        assert_eq!(ops, vec![Op::Line { target_mm: at([10.0, 5.0, 3.0]), feed_mm_per_min: None }]);
        assert_eq!(run(&mut gc, "G0").unwrap(), vec![]);
        let ops = run(&mut gc, "G91G0X1").unwrap();
        assert_eq!(ops, vec![Op::Line { target_mm: at([11.0, 5.0, 3.0]), feed_mm_per_min: None }]);
        let ops = run(&mut gc, "G90G20G1X1F10").unwrap();
        assert_eq!(ops, vec![Op::Line { target_mm: at([25.4, 5.0, 3.0]), feed_mm_per_min: Some(254.0) }]);
    }

    #[test]
    fn spindle_dwell_and_program_flow_ops_in_grbl_order() {
        let mut gc = GcState::new([0.0; MAX_AXES]);
        assert_eq!(run(&mut gc, "M3S1000").unwrap(), vec![Op::Spindle { dir: SpindleDir::Cw, rpm: 1000.0 }]);
        assert_eq!(run(&mut gc, "S500").unwrap(), vec![Op::Spindle { dir: SpindleDir::Cw, rpm: 500.0 }]);
        assert_eq!(run(&mut gc, "G4P0.25").unwrap(), vec![Op::Dwell { seconds: 0.25 }]);
        assert_eq!(run(&mut gc, "M5").unwrap(), vec![Op::Spindle { dir: SpindleDir::Off, rpm: 500.0 }]);
        assert_eq!(run(&mut gc, "S700").unwrap(), vec![], "S with the spindle off only sets the value");
        assert_eq!(run(&mut gc, "M0").unwrap(), vec![Op::Pause]);
        let ops = run(&mut gc, "M3G4P1G1X1F100M2").unwrap();
        assert_eq!(
            ops,
            vec![
                Op::Spindle { dir: SpindleDir::Cw, rpm: 700.0 },
                Op::Dwell { seconds: 1.0 },
                Op::Line { target_mm: at([1.0, 0.0, 0.0]), feed_mm_per_min: Some(100.0) },
                Op::ProgramEnd,
            ]
        );
        assert_eq!(gc.spindle, SpindleDir::Off);
        assert_eq!(gc.modes_report(), "[GC:G1 G54 G17 G21 G90 G94 M5 M9 T0 F100 S700]");
    }

    #[test]
    fn grbl_error_codes() {
        let mut gc = GcState::new([0.0; MAX_AXES]);
        let cases: &[(&str, u8)] = &[
            ("1G0", codes::ERROR_EXPECTED_COMMAND_LETTER),
            ("G0X1.2.3", codes::ERROR_EXPECTED_COMMAND_LETTER),
            ("G0X", codes::ERROR_BAD_NUMBER_FORMAT),
            ("GX", codes::ERROR_BAD_NUMBER_FORMAT),
            ("G2X1Y1I1", codes::ERROR_UNSUPPORTED_COMMAND),
            ("G92X0", codes::ERROR_UNSUPPORTED_COMMAND),
            ("M6", codes::ERROR_UNSUPPORTED_COMMAND),
            ("A5", codes::ERROR_UNSUPPORTED_COMMAND),
            ("G0G1X1", codes::ERROR_AXIS_COMMAND_CONFLICT), // grbl checks this before the modal group
            ("G90G91", codes::ERROR_MODAL_GROUP_VIOLATION),
            ("G0G80", codes::ERROR_MODAL_GROUP_VIOLATION),
            ("M3M5", codes::ERROR_MODAL_GROUP_VIOLATION),
            ("G1.5", codes::ERROR_COMMAND_VALUE_NOT_INTEGER),
            ("M3.5", codes::ERROR_COMMAND_VALUE_NOT_INTEGER),
            ("G0X1X2", codes::ERROR_WORD_REPEATED),
            ("F-1", codes::ERROR_NEGATIVE_VALUE),
            ("S-1", codes::ERROR_NEGATIVE_VALUE),
            ("G4", codes::ERROR_VALUE_WORD_MISSING),
            ("G4P-1", codes::ERROR_NEGATIVE_VALUE),
            ("P1", codes::ERROR_UNUSED_WORDS),
            ("G0X1I2", codes::ERROR_UNUSED_WORDS),
            ("G80X1", codes::ERROR_AXIS_WORDS_EXIST),
            ("N99999999G0", codes::ERROR_INVALID_LINE_NUMBER),
            ("T300", codes::ERROR_MAX_VALUE_EXCEEDED),
            ("G53G80", codes::ERROR_G53_INVALID_MOTION_MODE),
            ("G90.1", codes::ERROR_UNSUPPORTED_COMMAND),
        ];
        for (line, code) in cases {
            let before = gc.clone();
            assert_eq!(run(&mut gc, line), Err(*code), "line {line}");
            assert_eq!(gc, before, "line {line} must not change the state");
        }
        assert!(run(&mut gc, "G91.1").is_ok());
        assert!(run(&mut gc, "N10G0X1").is_ok());
        assert!(run(&mut gc, "G17G40G49G54G61G94M9").is_ok());
    }

    #[test]
    fn formatting_never_prints_negative_zero() {
        assert_eq!(fmt3(-0.0001), "0.000");
        assert_eq!(fmt3(12.3456), "12.346");
        assert_eq!(fmt3(-2.5), "-2.500");
        assert_eq!(fmt0(-0.2), "0");
        assert_eq!(fmt0(1499.6), "1500");
    }
}
