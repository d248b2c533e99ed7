//! grbl status reports (`<Idle|MPos:..|FS:..>`, and grbl 0.9's `<Idle,MPos:..,WPos:..>`),
//! read field by field into a [`StatusReport`]: one malformed field is listed in
//! [`StatusReport::bad_fields`] and the others are kept.

/// Machine state field of a status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineState {
    Idle,
    Run,
    /// `Hold:0` complete, `Hold:1` in progress.
    Hold(u8),
    Jog,
    /// `Alarm` (grblHAL may add the code, `Alarm:11`: still an alarm).
    Alarm,
    Door(u8),
    Check,
    Home,
    Sleep,
    /// A state this build does not know (grblHAL `Tool`, grbl 0.9 `Queue`), or a known state
    /// with an unreadable sub-state (`Hold:x`: never taken for `Hold:0`), verbatim.
    Other(String),
}

impl MachineState {
    pub(super) fn parse(s: &str) -> MachineState {
        let (name, sub) = match s.split_once(':') {
            Some((n, sub)) => (n, Some(sub.trim().parse::<u8>().ok())),
            None => (s, None),
        };
        match (name, sub) {
            // A sub-state that does not read is not guessed: `Hold:?` is not "hold complete".
            ("Hold" | "Door", Some(None)) => MachineState::Other(s.to_string()),
            ("Idle", _) => MachineState::Idle,
            ("Run", _) => MachineState::Run,
            ("Hold", sub) => MachineState::Hold(sub.flatten().unwrap_or(0)),
            ("Jog", _) => MachineState::Jog,
            ("Alarm", _) => MachineState::Alarm,
            ("Door", sub) => MachineState::Door(sub.flatten().unwrap_or(0)),
            ("Check", _) => MachineState::Check,
            ("Home", _) => MachineState::Home,
            ("Sleep", _) => MachineState::Sleep,
            _ => MachineState::Other(s.to_string()),
        }
    }
}

/// Most axes a position field may carry (X Y Z A B C).
pub const MAX_AXES: usize = 6;

/// The values of a position field (`MPos`, `WPos`, `WCO`, `[G54:...]`, `[PRB:...]`): 3 to 6
/// axes in the controller's order (X Y Z, then A B C on 5- and 6-axis rigs), mm for linear
/// axes and degrees for rotary ones. Never fewer than 3 nor a non-finite value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisValues {
    values: [f64; MAX_AXES],
    len: usize,
}

impl AxisValues {
    /// `None` unless 3 to 6 finite values.
    pub fn from_slice(values: &[f64]) -> Option<AxisValues> {
        if !(3..=MAX_AXES).contains(&values.len()) || !values.iter().all(|v| v.is_finite()) {
            return None;
        }
        let mut out = [0.0; MAX_AXES];
        out[..values.len()].copy_from_slice(values);
        Some(AxisValues { values: out, len: values.len() })
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.values[..self.len]
    }

    /// X, Y and Z (always present).
    pub fn xyz(&self) -> [f64; 3] {
        [self.values[0], self.values[1], self.values[2]]
    }

    /// Number of axes reported (3 to 6).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (at least 3 axes); present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn parse(s: &str) -> Result<AxisValues, String> {
        let values: Result<Vec<f64>, _> = s.split(',').map(|v| v.trim().parse::<f64>()).collect();
        match values {
            Ok(v) => AxisValues::from_slice(&v)
                .ok_or_else(|| format!("expected 3 to {MAX_AXES} finite axis values, got {}", v.len())),
            Err(_) => Err("an axis value is not a number".to_string()),
        }
    }
}

/// Override values of a status report (`Ov:feed,rapid,spindle`), percent of programmed.
/// Feed and rapid overrides scale the feeds the verifier proved; 100 is "as programmed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrides {
    pub feed_pct: u16,
    pub rapid_pct: u16,
    pub spindle_pct: u16,
}

impl Overrides {
    /// Feeds and rapids run as programmed (the spindle override does not change motion).
    pub fn motion_as_programmed(&self) -> bool {
        self.feed_pct == 100 && self.rapid_pct == 100
    }
}

/// Input pins reported active (`Pn:XYZPDHRS`; grblHAL adds `ABC` limits and `E` e-stop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinState {
    /// Limit switches X, Y, Z, A, B, C.
    pub limits: [bool; MAX_AXES],
    pub probe: bool,
    pub door: bool,
    pub hold: bool,
    pub soft_reset: bool,
    pub cycle_start: bool,
    pub e_stop: bool,
    /// Letters this build does not know, verbatim.
    pub other: String,
}

impl PinState {
    fn parse(s: &str) -> PinState {
        let mut p = PinState::default();
        for c in s.trim().chars() {
            match c {
                'X' => p.limits[0] = true,
                'Y' => p.limits[1] = true,
                'Z' => p.limits[2] = true,
                'A' => p.limits[3] = true,
                'B' => p.limits[4] = true,
                'C' => p.limits[5] = true,
                'P' => p.probe = true,
                'D' => p.door = true,
                'H' => p.hold = true,
                'R' => p.soft_reset = true,
                'S' => p.cycle_start = true,
                'E' => p.e_stop = true,
                other => p.other.push(other),
            }
        }
        p
    }
}

/// Accessory state (`A:SCFM`): spindle clockwise / counter-clockwise (for SMP, the cartridge
/// motor), flood and mist coolant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessoryState {
    pub spindle_cw: bool,
    pub spindle_ccw: bool,
    pub flood: bool,
    pub mist: bool,
    /// Letters this build does not know (grblHAL `T` tool change...), verbatim.
    pub other: String,
}

impl AccessoryState {
    fn parse(s: &str) -> AccessoryState {
        let mut a = AccessoryState::default();
        for c in s.trim().chars() {
            match c {
                'S' => a.spindle_cw = true,
                'C' => a.spindle_ccw = true,
                'F' => a.flood = true,
                'M' => a.mist = true,
                other => a.other.push(other),
            }
        }
        a
    }
}

/// A parsed status report, grbl 1.1 `<Idle|MPos:..|FS:..>` or grbl 0.9 `<Idle,MPos:..,WPos:..>`.
/// Fields grbl did not include are `None`. Parsed field by field: one malformed field is
/// `None` and listed in `bad_fields`, the others are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub state: MachineState,
    /// Machine position (`MPos:`), 3 to 6 axes.
    pub mpos: Option<AxisValues>,
    /// Work position (`WPos:`), when grbl is set to report it instead.
    pub wpos: Option<AxisValues>,
    /// Work coordinate offset (`WCO:`): work position = machine position - WCO. grbl sends it
    /// only every 10 to 30 reports.
    pub wco: Option<AxisValues>,
    /// Current feed (`FS:` or `F:`), mm/min.
    pub feed_mm_per_min: Option<f64>,
    /// Current spindle speed (`FS:`), rpm.
    pub spindle_rpm: Option<f64>,
    /// Planner blocks and rx bytes available (`Bf:`).
    pub buffer: Option<(u32, u32)>,
    /// Line number being executed (`Ln:`, when the program numbers its lines).
    pub line_number: Option<u32>,
    /// Override values (`Ov:`). grbl sends them only every 10 to 20 reports, and on the
    /// report after any change.
    pub overrides: Option<Overrides>,
    /// Input pins active (`Pn:`); absent when none is.
    pub pins: Option<PinState>,
    /// Accessory state (`A:`); absent when all are off.
    pub accessories: Option<AccessoryState>,
    /// Fields this build does not interpret (grblHAL `SD:`, `H:`, `T:`...; grbl 0.9 `Buf:`,
    /// `RX:`, `Lim:`), verbatim.
    pub other_fields: Vec<String>,
    /// Known fields that did not parse: the field verbatim and why. Their value above is `None`.
    pub bad_fields: Vec<String>,
}

impl StatusReport {
    /// A report of `state` with no field.
    pub fn new(state: MachineState) -> StatusReport {
        StatusReport {
            state,
            mpos: None,
            wpos: None,
            wco: None,
            feed_mm_per_min: None,
            spindle_rpm: None,
            buffer: None,
            line_number: None,
            overrides: None,
            pins: None,
            accessories: None,
            other_fields: Vec::new(),
            bad_fields: Vec::new(),
        }
    }

    /// Whether an `Ov` field was present but unreadable: the overrides are then unknown.
    pub fn overrides_unreadable(&self) -> bool {
        self.bad_fields.iter().any(|f| f.starts_with("Ov:"))
    }
}

/// Parses the inside of `<...>`; `None` only when there is no state at all.
pub(super) fn parse_status(inner: &str) -> Option<StatusReport> {
    if !inner.contains('|') && inner.contains(',') {
        return parse_status_09(inner);
    }
    let mut fields = inner.split('|');
    let state = fields.next()?.trim();
    if state.is_empty() {
        return None;
    }
    let mut report = StatusReport::new(MachineState::parse(state));
    for f in fields {
        apply_field(&mut report, f);
    }
    Some(report)
}

/// grbl 0.9: `Idle,MPos:0.000,0.000,0.000,WPos:0.000,0.000,0.000,Buf:0,RX:0`. A comma starts
/// a new field when what follows has a `Key:`; otherwise it continues the field's values.
fn parse_status_09(inner: &str) -> Option<StatusReport> {
    let mut tokens = inner.split(',');
    let state = tokens.next()?.trim();
    if state.is_empty() || state.contains(':') {
        return None;
    }
    let mut report = StatusReport::new(MachineState::parse(state));
    let mut field: Option<String> = None;
    for t in tokens {
        let starts_field =
            t.split_once(':').is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()));
        if starts_field {
            if let Some(f) = field.take() {
                apply_field(&mut report, &f);
            }
            field = Some(t.to_string());
        } else if let Some(f) = field.as_mut() {
            f.push(',');
            f.push_str(t);
        } else {
            report.bad_fields.push(format!("{t}: a value with no field name"));
        }
    }
    if let Some(f) = field.take() {
        apply_field(&mut report, &f);
    }
    Some(report)
}

/// Applies one `Key:value` field; a malformed known field goes to `bad_fields`, an unknown
/// one to `other_fields`, and neither disturbs the other fields.
fn apply_field(report: &mut StatusReport, field: &str) {
    let Some((key, value)) = field.split_once(':') else {
        if !field.trim().is_empty() {
            report.other_fields.push(field.to_string());
        }
        return;
    };
    let result: Result<(), String> = (|| {
        match key {
            "MPos" => report.mpos = Some(AxisValues::parse(value)?),
            "WPos" => report.wpos = Some(AxisValues::parse(value)?),
            "WCO" => report.wco = Some(AxisValues::parse(value)?),
            "FS" => {
                let (feed, spindle) = value.split_once(',').ok_or("expected feed,speed")?;
                let feed = parse_finite(feed)?;
                let spindle = parse_finite(spindle)?;
                report.feed_mm_per_min = Some(feed);
                report.spindle_rpm = Some(spindle);
            }
            "F" => report.feed_mm_per_min = Some(parse_finite(value)?),
            "Bf" => {
                let (blocks, bytes) = value.split_once(',').ok_or("expected blocks,bytes")?;
                let blocks = blocks.trim().parse::<u32>().map_err(|_| "blocks is not a count")?;
                let bytes = bytes.trim().parse::<u32>().map_err(|_| "bytes is not a count")?;
                report.buffer = Some((blocks, bytes));
            }
            "Ln" => report.line_number = Some(value.trim().parse::<u32>().map_err(|_| "not a line number")?),
            "Ov" => {
                let v: Result<Vec<u16>, _> = value.split(',').map(|p| p.trim().parse::<u16>()).collect();
                match v.as_deref() {
                    Ok([feed_pct, rapid_pct, spindle_pct]) => {
                        report.overrides =
                            Some(Overrides { feed_pct: *feed_pct, rapid_pct: *rapid_pct, spindle_pct: *spindle_pct })
                    }
                    _ => return Err("expected three whole percentages feed,rapid,spindle".to_string()),
                }
            }
            "Pn" => report.pins = Some(PinState::parse(value)),
            "A" => report.accessories = Some(AccessoryState::parse(value)),
            _ => report.other_fields.push(field.to_string()),
        }
        Ok(())
    })();
    if let Err(why) = result {
        report.bad_fields.push(format!("{field}: {why}"));
    }
}

fn parse_finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{}` is not a finite number", s.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grbl::{parse_response, Response};

    fn status(line: &str) -> StatusReport {
        match parse_response(line) {
            Response::Status(s) => *s,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn axes(v: &[f64]) -> Option<AxisValues> {
        AxisValues::from_slice(v)
    }

    #[test]
    fn full_grbl11_status_report_keeps_every_field() {
        let s = status("<Run|MPos:1.000,2.000,3.000|Bf:15,128|FS:600,9000|Ln:7|WCO:0.500,-1.000,0.000|Ov:120,50,90|Pn:XZPDHRSEq|A:SFMCt>");
        assert_eq!(s.state, MachineState::Run);
        assert_eq!(s.mpos, axes(&[1.0, 2.0, 3.0]));
        assert_eq!(s.buffer, Some((15, 128)));
        assert_eq!((s.feed_mm_per_min, s.spindle_rpm), (Some(600.0), Some(9000.0)));
        assert_eq!(s.line_number, Some(7));
        assert_eq!(s.wco, axes(&[0.5, -1.0, 0.0]));
        assert_eq!(s.overrides, Some(Overrides { feed_pct: 120, rapid_pct: 50, spindle_pct: 90 }));
        assert!(!s.overrides.is_some_and(|o| o.motion_as_programmed()));
        let pins = s.pins.clone().expect("pins");
        assert_eq!(pins.limits, [true, false, true, false, false, false]);
        assert!(pins.probe && pins.door && pins.hold && pins.soft_reset && pins.cycle_start && pins.e_stop);
        assert_eq!(pins.other, "q");
        let a = s.accessories.clone().expect("accessories");
        assert!(a.spindle_cw && a.spindle_ccw && a.flood && a.mist);
        assert_eq!(a.other, "t");
        assert!(s.bad_fields.is_empty() && s.other_fields.is_empty(), "{s:?}");
        assert!(!s.overrides_unreadable());
    }

    #[test]
    fn positions_with_three_to_six_axes_and_wpos_and_f_only() {
        for n in 3..=6 {
            let v: Vec<String> = (0..n).map(|i| format!("{i}.500")).collect();
            let s = status(&format!("<Idle|WPos:{}|F:250.5>", v.join(",")));
            let got = s.wpos.expect("wpos");
            assert_eq!(got.len(), n);
            assert_eq!(got.as_slice()[n - 1], n as f64 - 0.5);
            assert_eq!(got.xyz(), [0.5, 1.5, 2.5]);
            assert_eq!(s.feed_mm_per_min, Some(250.5));
            assert_eq!(s.spindle_rpm, None);
        }
        for bad in ["1,2", "1,2,3,4,5,6,7", "1,x,3", "1,2,inf", ""] {
            let s = status(&format!("<Idle|MPos:{bad}|FS:1,2>"));
            assert_eq!(s.mpos, None, "{bad}");
            assert_eq!(s.feed_mm_per_min, Some(1.0), "the good field is kept next to `{bad}`");
            assert_eq!(s.bad_fields.len(), 1, "{bad}: {:?}", s.bad_fields);
            assert!(s.bad_fields[0].starts_with("MPos:"), "{:?}", s.bad_fields);
        }
    }

    #[test]
    fn one_bad_field_leaves_the_others() {
        let s = status("<Hold:0|MPos:1,2|Bf:x,1|FS:5|Ln:-3|Ov:200,100|WCO:0,0,0|SD:42.0,file.nc|H:1,7|Pn:Y>");
        assert_eq!(s.state, MachineState::Hold(0));
        assert_eq!(s.wco, axes(&[0.0; 3]));
        assert_eq!(s.pins.as_ref().map(|p| p.limits[1]), Some(true));
        assert_eq!((s.mpos, s.buffer, s.feed_mm_per_min, s.line_number, s.overrides), (None, None, None, None, None));
        let bad: Vec<&str> = s.bad_fields.iter().map(|f| f.split(':').next().unwrap_or("")).collect();
        assert_eq!(bad, ["MPos", "Bf", "FS", "Ln", "Ov"]);
        assert!(s.overrides_unreadable());
        assert_eq!(s.other_fields, ["SD:42.0,file.nc", "H:1,7"]);
    }

    #[test]
    fn states_with_and_without_substates() {
        let cases = [
            ("Idle", MachineState::Idle),
            ("Run", MachineState::Run),
            ("Hold:1", MachineState::Hold(1)),
            ("Hold", MachineState::Hold(0)),
            ("Hold:x", MachineState::Other("Hold:x".into())),
            ("Jog", MachineState::Jog),
            ("Alarm", MachineState::Alarm),
            ("Alarm:11", MachineState::Alarm),
            ("Door:2", MachineState::Door(2)),
            ("Check", MachineState::Check),
            ("Home", MachineState::Home),
            ("Sleep", MachineState::Sleep),
            ("Tool", MachineState::Other("Tool".into())),
        ];
        for (text, state) in cases {
            assert_eq!(status(&format!("<{text}|MPos:0,0,0>")).state, state, "{text}");
            assert_eq!(status(&format!("<{text}>")).state, state, "{text}");
        }
    }

    #[test]
    fn grbl09_comma_status() {
        let s = status("<Idle,MPos:0.000,1.000,2.000,WPos:-1.000,0.000,1.000,Buf:0,RX:3,Ln:12,F:300.>");
        assert_eq!(s.state, MachineState::Idle);
        assert_eq!(s.mpos, axes(&[0.0, 1.0, 2.0]));
        assert_eq!(s.wpos, axes(&[-1.0, 0.0, 1.0]));
        assert_eq!(s.line_number, Some(12));
        assert_eq!(s.feed_mm_per_min, Some(300.0));
        assert_eq!(s.other_fields, ["Buf:0", "RX:3"]);
        let s = status("<Alarm,MPos:0.000,0.000,0.000>");
        assert_eq!(s.state, MachineState::Alarm);
        assert_eq!(parse_response("<,MPos:1,2,3>"), Response::Unknown);
    }
}
