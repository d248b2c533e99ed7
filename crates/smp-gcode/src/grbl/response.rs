//! One received line, parsed: [`parse_response`] is the one place that knows grbl's
//! response forms (grbl 1.1, grbl 0.9, grblHAL): answers, alarms, status reports (read by the
//! `status` module), `[...]` feedback and settings, banners. It is total: what it does not
//! know is [`Response::Unknown`], never a panic.

use super::status::{parse_status, AxisValues, StatusReport};

/// Typed `[...]` and `$` feedback (answers to `$G`, `$#`, `$I`, `$$`, `$N`, probing, echo).
#[derive(Debug, Clone, PartialEq)]
pub enum Feedback {
    /// `[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]` (grbl 0.9: without the `GC:` tag).
    ParserState(String),
    /// `[PRB:0.000,0.000,1.492:1]`: probe position, and whether the probe touched.
    Probe { position: AxisValues, success: bool },
    /// `[echo:...]`: the line as grbl's parser received it.
    Echo(String),
    /// `[VER:1.1h.20190825:name]`.
    Version { version: String, build_info: String },
    /// `[OPT:V,15,128]`: option codes, then the numbers (planner blocks, rx buffer bytes...).
    Options { codes: String, values: Vec<u32> },
    /// `[HLP:$$ $# $G ...]`.
    Help(String),
    /// `[TLO:0.000]` tool length offset(s), mm.
    ToolLengthOffset(Vec<f64>),
    /// `[G54:...]`..`[G59:...]`, `[G28:...]`, `[G30:...]`, `[G92:...]` (grblHAL `[G59.3:...]`).
    CoordinateOffset { system: String, offset: AxisValues },
    /// `$110=3000.000`, `$N0=G21`: a setting or startup block as listed by `$$` / `$N`.
    Setting { key: String, value: String },
    /// `>G21:ok` / `>G21:error:20`: a startup block grbl ran at boot, and its outcome.
    StartupBlock { block: String, error_code: Option<u16> },
    /// grblHAL `$I` extras (`[FIRMWARE:grblHAL]`, `[NEWOPT:...]`, `[AXS:...]`, `[DRIVER:...]`...).
    Info { tag: String, text: String },
}

/// One received line, parsed (see [`parse_response`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Ok,
    /// `error:N`; code 0 for a grbl 0.9 textual error (`error: Bad number format`).
    Error {
        code: u16,
    },
    /// `ALARM:N`, or with text (`ALARM:Hard limit`, grbl 0.9 `ALARM: Probe fail`).
    Alarm {
        code: Option<u16>,
        text: Option<String>,
    },
    /// Boxed: a report is large next to the other variants.
    Status(Box<StatusReport>),
    /// `[MSG:...]`, or a grbl 0.9 bracketed message (`[Caution: Unlocked]`), text inside.
    Message(String),
    Feedback(Feedback),
    /// `Grbl 1.1h ['$' for help]`, `GrblHAL 1.1f ['$' or '$HELP' for help]`.
    Banner {
        firmware: String,
        version: String,
    },
    /// Nothing this build interprets (debug output, line noise, an empty `<>`).
    Unknown,
}

/// Parses one received line (without its line ending) into what it means. Total: every input
/// gives an answer, never a panic; what this build does not know is [`Response::Unknown`].
///
/// Forms: `ok`; `error:N` (grbl 0.9: `error: text`); `ALARM:N` or with text; status reports
/// in grbl 1.1 (`<Idle|MPos:..|..>`) and 0.9 (`<Idle,MPos:..,WPos:..>`) form; `[MSG:..]`
/// and grbl 0.9's bare `[...]` messages; `[GC:..]`, `[PRB:..]`, `[echo:..]`, `[VER:..]`,
/// `[OPT:..]`, `[HLP:..]`, `[TLO:..]`, `[G54:..]`.. feedback and grblHAL's `$I` extras;
/// `$N=value` settings; `>block:ok` startup echoes; grbl's and grblHAL's banners.
pub fn parse_response(line: &str) -> Response {
    let line = line.trim();
    if line == "ok" {
        return Response::Ok;
    }
    if let Some(code) = line.strip_prefix("error:") {
        // grbl 0.9 answers with text; it is still a rejection of the line (code 0).
        return Response::Error { code: code.trim().parse::<u16>().unwrap_or(0) };
    }
    if line.len() >= 5 && line.as_bytes()[..5].eq_ignore_ascii_case(b"ALARM") {
        let rest = line[5..].trim_start_matches(':').trim();
        return match rest.parse::<u16>() {
            Ok(code) => Response::Alarm { code: Some(code), text: None },
            Err(_) => Response::Alarm { code: None, text: (!rest.is_empty()).then(|| rest.to_string()) },
        };
    }
    if let Some(inner) = line.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
        return parse_status(inner).map_or(Response::Unknown, |s| Response::Status(Box::new(s)));
    }
    if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        return parse_bracketed(inner);
    }
    if let Some(setting) = line.strip_prefix('$') {
        if let Some((key, value)) = setting.split_once('=') {
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Response::Feedback(Feedback::Setting { key: key.to_string(), value: value.to_string() });
            }
        }
        return Response::Unknown;
    }
    if let Some(echo) = line.strip_prefix('>') {
        if let Some(block) = echo.strip_suffix(":ok") {
            return Response::Feedback(Feedback::StartupBlock { block: block.to_string(), error_code: None });
        }
        if let Some((block, code)) = echo.rsplit_once(":error:") {
            let error_code = Some(code.trim().parse::<u16>().unwrap_or(0));
            return Response::Feedback(Feedback::StartupBlock { block: block.to_string(), error_code });
        }
        return Response::Unknown;
    }
    if let Some((firmware, version)) = parse_banner(line) {
        return Response::Banner { firmware, version };
    }
    Response::Unknown
}

/// `Grbl 1.1h ['$' for help]` -> (`Grbl`, `1.1h`); `GrblHAL 1.1f ['$' or '$HELP' for help]` ->
/// (`GrblHAL`, `1.1f`). The version must start with a digit and the help hint must follow,
/// so that chatter starting with "Grbl" is not taken for a restart.
pub(super) fn parse_banner(line: &str) -> Option<(String, String)> {
    let mut words = line.split_whitespace();
    let firmware = words.next()?;
    if !(firmware.eq_ignore_ascii_case("grbl") || firmware.eq_ignore_ascii_case("grblhal")) {
        return None;
    }
    let version = words.next()?;
    if !version.starts_with(|c: char| c.is_ascii_digit()) || !line.contains('[') {
        return None;
    }
    Some((firmware.to_string(), version.to_string()))
}

/// grbl 0.9's feedback messages, bracketed without a tag.
const GRBL09_MESSAGES: [&str; 9] = [
    "Reset to continue",
    "'$H'|'$X' to unlock",
    "Caution: Unlocked",
    "Enabled",
    "Disabled",
    "Check Door",
    "Pgm End",
    "Restoring defaults",
    "Restoring spindle",
];

/// grblHAL's `$I` and report tags (informational only).
const INFO_TAGS: [&str; 16] = [
    "NEWOPT",
    "FIRMWARE",
    "AXS",
    "SIGNALS",
    "PLUGIN",
    "DRIVER",
    "DRIVER VERSION",
    "DRIVER OPTIONS",
    "BOARD",
    "NVS STORAGE",
    "FREE MEMORY",
    "AUX IO",
    "COMPILER",
    "SETTING",
    "SPINDLE",
    "LASER",
];

fn is_coordinate_system(tag: &str) -> bool {
    matches!(tag, "G28" | "G30" | "G92")
        || tag
            .strip_prefix("G5")
            .is_some_and(|n| matches!(n, "4" | "5" | "6" | "7" | "8" | "9" | "9.1" | "9.2" | "9.3"))
}

/// The inside of `[...]`.
fn parse_bracketed(inner: &str) -> Response {
    let Some((tag, body)) = inner.split_once(':') else {
        return parse_bare_bracketed(inner);
    };
    let fb = match tag {
        "MSG" => return Response::Message(body.to_string()),
        "GC" => Feedback::ParserState(body.to_string()),
        "echo" => Feedback::Echo(body.to_string()),
        "HLP" => Feedback::Help(body.to_string()),
        "VER" => {
            let (version, build_info) = body.split_once(':').unwrap_or((body, ""));
            Feedback::Version { version: version.to_string(), build_info: build_info.to_string() }
        }
        "OPT" => {
            let mut parts = body.split(',');
            let codes = parts.next().unwrap_or("").to_string();
            let values: Result<Vec<u32>, _> = parts.map(|v| v.trim().parse::<u32>()).collect();
            match values {
                Ok(values) => Feedback::Options { codes, values },
                Err(_) => return Response::Unknown,
            }
        }
        "PRB" => {
            let Some((pos, ok)) = body.rsplit_once(':') else { return Response::Unknown };
            let (Ok(position), Some(success)) = (AxisValues::parse(pos), parse_flag(ok)) else {
                return Response::Unknown;
            };
            Feedback::Probe { position, success }
        }
        "TLO" => {
            let values: Result<Vec<f64>, _> = body.split(',').map(|v| v.trim().parse::<f64>()).collect();
            match values {
                Ok(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => Feedback::ToolLengthOffset(v),
                _ => return Response::Unknown,
            }
        }
        t if is_coordinate_system(t) => match AxisValues::parse(body) {
            Ok(offset) => Feedback::CoordinateOffset { system: t.to_string(), offset },
            Err(_) => return Response::Unknown,
        },
        t if INFO_TAGS.contains(&t) => Feedback::Info { tag: t.to_string(), text: body.to_string() },
        _ => return parse_bare_bracketed(inner),
    };
    Response::Feedback(fb)
}

/// grbl 0.9's untagged `[...]`: a known message, or the `$G` parser state.
fn parse_bare_bracketed(inner: &str) -> Response {
    if GRBL09_MESSAGES.contains(&inner) {
        return Response::Message(inner.to_string());
    }
    let first = inner.split_whitespace().next().unwrap_or("");
    let is_gcode_word = first.len() >= 2
        && first.starts_with('G')
        && first[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
        && inner.contains(' ');
    if is_gcode_word {
        return Response::Feedback(Feedback::ParserState(inner.to_string()));
    }
    Response::Unknown
}

fn parse_flag(s: &str) -> Option<bool> {
    match s.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_errors_banners_and_answers() {
        assert_eq!(parse_response("ok"), Response::Ok);
        assert_eq!(parse_response("error:20"), Response::Error { code: 20 });
        assert_eq!(parse_response("error: Bad number format"), Response::Error { code: 0 });
        assert_eq!(parse_response("ALARM:3"), Response::Alarm { code: Some(3), text: None });
        assert_eq!(parse_response("ALARM:Hard limit"), Response::Alarm { code: None, text: Some("Hard limit".into()) });
        assert_eq!(
            parse_response("ALARM: Hard/soft limit"),
            Response::Alarm { code: None, text: Some("Hard/soft limit".into()) }
        );
        assert_eq!(parse_response("ALARM"), Response::Alarm { code: None, text: None });
        assert_eq!(
            parse_response("GrblHAL 1.1f ['$' or '$HELP' for help]"),
            Response::Banner { firmware: "GrblHAL".into(), version: "1.1f".into() }
        );
        assert_eq!(
            parse_response("Grbl 0.9j ['$' for help]"),
            Response::Banner { firmware: "Grbl".into(), version: "0.9j".into() }
        );
        assert_eq!(
            parse_response("Grbl 3.7.8 [FluidNC v3.7.8 (wifi) '$' for help]"),
            Response::Banner { firmware: "Grbl".into(), version: "3.7.8".into() }
        );
        for not_banner in ["Grbl is great", "Grbl 1.1h", "grblish 1.1 [x]", "Grbl"] {
            assert_eq!(parse_response(not_banner), Response::Unknown, "{not_banner}");
        }
    }

    #[test]
    fn every_feedback_form_is_typed() {
        let fb = |l: &str| match parse_response(l) {
            Response::Feedback(f) => f,
            other => panic!("{l}: {other:?}"),
        };
        assert_eq!(parse_response("[MSG:Caution: Unlocked]"), Response::Message("Caution: Unlocked".into()));
        assert_eq!(parse_response("[Caution: Unlocked]"), Response::Message("Caution: Unlocked".into()));
        assert_eq!(parse_response("['$H'|'$X' to unlock]"), Response::Message("'$H'|'$X' to unlock".into()));
        assert_eq!(
            fb("[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]"),
            Feedback::ParserState("G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0".into())
        );
        assert_eq!(
            fb("[G0 G54 G17 G21 G90 G94 M0 M5 M9 T0 F0. S0.]"),
            Feedback::ParserState("G0 G54 G17 G21 G90 G94 M0 M5 M9 T0 F0. S0.".into())
        );
        assert_eq!(
            fb("[PRB:0.000,0.000,1.492:1]"),
            Feedback::Probe { position: AxisValues::from_slice(&[0.0, 0.0, 1.492]).expect("3"), success: true }
        );
        assert_eq!(fb("[echo:G1X1]"), Feedback::Echo("G1X1".into()));
        assert_eq!(
            fb("[VER:1.1h.20190825:my rig]"),
            Feedback::Version { version: "1.1h.20190825".into(), build_info: "my rig".into() }
        );
        assert_eq!(fb("[OPT:V,15,128]"), Feedback::Options { codes: "V".into(), values: vec![15, 128] });
        assert_eq!(fb("[HLP:$$ $# $G $I $N $x=val]"), Feedback::Help("$$ $# $G $I $N $x=val".into()));
        assert_eq!(fb("[TLO:0.000]"), Feedback::ToolLengthOffset(vec![0.0]));
        for sys in ["G54", "G55", "G56", "G57", "G58", "G59", "G59.3", "G28", "G30", "G92"] {
            assert_eq!(
                fb(&format!("[{sys}:1.000,2.000,3.000,4.000,5.000]")),
                Feedback::CoordinateOffset {
                    system: sys.into(),
                    offset: AxisValues::from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0]).expect("5")
                }
            );
        }
        assert_eq!(fb("[FIRMWARE:grblHAL]"), Feedback::Info { tag: "FIRMWARE".into(), text: "grblHAL".into() });
        assert_eq!(fb("$110=3000.000"), Feedback::Setting { key: "110".into(), value: "3000.000".into() });
        assert_eq!(fb("$N0=G21"), Feedback::Setting { key: "N0".into(), value: "G21".into() });
        assert_eq!(fb(">G21:ok"), Feedback::StartupBlock { block: "G21".into(), error_code: None });
        assert_eq!(fb(">G54G20:error:20"), Feedback::StartupBlock { block: "G54G20".into(), error_code: Some(20) });
        // Malformed or unknown feedback is unknown, never misread.
        for junk in [
            "[FOO:1]",
            "[PRB:1,2:1]",
            "[PRB:1,2,3:7]",
            "[OPT:V,x]",
            "[G54:1,2]",
            "[TLO:x]",
            "$=x",
            "$",
            ">G21",
            "[]",
            "[",
        ] {
            assert_eq!(parse_response(junk), Response::Unknown, "{junk}");
        }
    }
}
