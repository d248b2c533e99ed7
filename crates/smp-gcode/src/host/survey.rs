//! Before a program streams: what the grbl controller says it is (`$I`, `$$`), and whether it
//! can run the program at all.
//!
//! A program proved safe against the rig file can still be wrong for the controller on the
//! other end of the cable: a 3-axis grbl reads the A and B words of a 5-axis program as an
//! error (or, on some forks, ignores them), a spindle maximum `$30` below the program's `S`
//! caps the cartridge speed silently (grbl scales S to `$30`), laser mode `$32=1` turns the
//! cartridge off on every rapid, and a travel `$13x` shorter than the program's range ends in
//! a soft-limit alarm mid-session. [`Survey`] asks (sans-I/O: bytes in, bytes out, a
//! deadline), [`ControllerProfile::check`] names each problem with the setting to change.
//!
//! grbl 1.1 answers `$I` with `[VER:...]` and `[OPT:...]` only and drives X Y Z; a grblHAL
//! build adds `[AXS:<n>:<letters>]` (its axis count and letters), which is how a 5- or
//! 6-axis controller is told from a 3-axis one. `$$` lists `$<n>=<value>` then `ok`; grbl
//! refuses it during a cycle or hold (`error:8`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::grbl::{parse_response, Feedback, Response};
use crate::verify::MachineNeeds;

/// What the controller reported about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControllerProfile {
    /// `[VER:...]`: version and build info.
    pub version: Option<String>,
    /// The axis letters it drives: from grblHAL's `[AXS:n:letters]`, else grbl's X Y Z.
    pub axis_letters: String,
    /// `$n=value` from `$$` (numeric settings only).
    pub settings: BTreeMap<u16, f64>,
}

/// One reason the controller cannot run the program, with the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsuitable {
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Unsuitable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.problem, self.fix)
    }
}

/// Settings `$130`..`$135`: maximum travel per axis, in the controller's axis order.
const TRAVEL_SETTING: u16 = 130;
/// Tolerance on travel and speed comparisons (the controller prints three decimals).
const EPS: f64 = 1e-3;

impl ControllerProfile {
    /// Every reason this controller cannot run a program with `needs` (empty: it can).
    pub fn check(&self, needs: &MachineNeeds) -> Vec<Unsuitable> {
        let mut out = Vec::new();
        let missing: String = needs.axes.iter().map(|a| a.letter).filter(|l| !self.axis_letters.contains(*l)).collect();
        if !missing.is_empty() {
            out.push(Unsuitable {
                problem: format!(
                    "the program moves axis {} but the controller drives only {} (its `$I`{})",
                    spaced(&missing),
                    spaced(&self.axis_letters),
                    if self.axis_letters == "XYZ" { " reports no further axes" } else { "" }
                ),
                fix: "flash a controller built for the rig's axes (grblHAL with N_AXIS set), or plan and compile for \
                      the rig this controller drives (--rig)"
                    .into(),
            });
        }
        match self.settings.get(&30) {
            None if needs.max_spindle_rpm > 0.0 => out.push(Unsuitable {
                problem: "the controller's `$$` lists no spindle maximum `$30`".into(),
                fix: "check that the port leads to a grbl 1.1 controller".into(),
            }),
            Some(&max) if needs.max_spindle_rpm > max + EPS => out.push(Unsuitable {
                problem: format!(
                    "the program runs the cartridge at S{} rpm but the controller's spindle maximum is `$30={}` (grbl \
                     scales S to $30 and caps it: the cartridge would run slower than planned)",
                    num(needs.max_spindle_rpm),
                    num(max)
                ),
                fix: format!(
                    "set `$30={}` or more (up to the cartridge's rated maximum), or lower the session's speed",
                    num(needs.max_spindle_rpm)
                ),
            }),
            _ => {}
        }
        if let Some(&min) = self.settings.get(&31) {
            if needs.min_spindle_rpm > 0.0 && needs.min_spindle_rpm + EPS < min {
                out.push(Unsuitable {
                    problem: format!(
                        "the program runs the cartridge at S{} rpm, below the controller's spindle minimum `$31={}` \
                         (grbl would run it at $31)",
                        num(needs.min_spindle_rpm),
                        num(min)
                    ),
                    fix: format!("set `$31={}` or lower", num(needs.min_spindle_rpm)),
                });
            }
        }
        if self.settings.get(&32).is_some_and(|&v| v != 0.0) {
            out.push(Unsuitable {
                problem: "the controller is in laser mode `$32=1`: it turns the spindle off on every rapid and scales \
                          it with speed, so the cartridge would stop and start between dots"
                    .into(),
                fix: "set `$32=0`".into(),
            });
        }
        for a in &needs.axes {
            let Some(index) = self.axis_letters.find(a.letter) else { continue };
            let key = TRAVEL_SETTING + index as u16;
            let Some(&travel) = self.settings.get(&key) else { continue };
            let span = a.max - a.min;
            if span > travel + EPS {
                out.push(Unsuitable {
                    problem: format!(
                        "the program moves {} over {} (from {} to {}) but the controller's travel is `${key}={}`: it \
                         would stop with a soft-limit alarm mid-session",
                        a.letter,
                        num(span),
                        num(a.min),
                        num(a.max),
                        num(travel)
                    ),
                    fix: format!("set `${key}` to the axis's real travel (the rig file's), or check the rig file"),
                });
            }
        }
        out
    }
}

fn spaced(letters: &str) -> String {
    letters.chars().map(String::from).collect::<Vec<_>>().join(", ")
}

fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Why the survey gave no profile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SurveyError {
    #[error(
        "the controller did not answer `{command}` within {waited_s:.1} s; check that it is a grbl 1.1 controller, \
         powered, at the right baud rate, and not busy"
    )]
    NoAnswer { command: &'static str, waited_s: f64 },
    #[error("the controller refused `{command}` with error:{code}{hint}")]
    Refused { command: &'static str, code: u16, hint: &'static str },
    #[error("the controller is in alarm ({line}); clear it (`$X` after checking the arm, or home with `$H`) first")]
    Alarm { line: String },
}

/// Settings of a [`Survey`].
#[derive(Debug, Clone, Copy)]
pub struct SurveyConfig {
    /// How long each question may go unanswered. The question is asked once more at half of
    /// it (a board that reset when the port opened drops bytes while its bootloader runs).
    pub answer_timeout: Duration,
}

impl Default for SurveyConfig {
    fn default() -> Self {
        SurveyConfig { answer_timeout: Duration::from_secs(5) }
    }
}

const QUESTIONS: [&str; 2] = ["$I", "$$"];

/// Asks `$I` then `$$` and reads the answers. Sans-I/O: feed it what the port read
/// ([`Survey::handle_bytes`]) and the time; write what [`Survey::poll_transmit`] gives.
#[derive(Debug)]
pub struct Survey {
    cfg: SurveyConfig,
    /// Index into [`QUESTIONS`] of the question being answered.
    asking: usize,
    /// When the current question was first sent, and whether it was sent again.
    sent_at: Option<Duration>,
    resent: bool,
    pending: Option<&'static str>,
    rx: Vec<u8>,
    profile: ControllerProfile,
    axes_reported: bool,
    outcome: Option<Result<ControllerProfile, SurveyError>>,
}

impl Survey {
    pub fn new(cfg: SurveyConfig) -> Survey {
        Survey {
            cfg,
            asking: 0,
            sent_at: None,
            resent: false,
            pending: Some(QUESTIONS[0]),
            rx: Vec::new(),
            profile: ControllerProfile::default(),
            axes_reported: false,
            outcome: None,
        }
    }

    /// Bytes to write now, if any.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Vec<u8>> {
        if self.outcome.is_some() {
            return None;
        }
        if let Some(sent) = self.sent_at {
            let waited = now.saturating_sub(sent);
            if waited >= self.cfg.answer_timeout {
                self.outcome = Some(Err(SurveyError::NoAnswer {
                    command: QUESTIONS[self.asking],
                    waited_s: waited.as_secs_f64(),
                }));
                return None;
            }
            if !self.resent && waited >= self.cfg.answer_timeout / 2 {
                self.resent = true;
                return Some(format!("{}\n", QUESTIONS[self.asking]).into_bytes());
            }
        }
        let q = self.pending.take()?;
        self.sent_at = Some(now);
        self.resent = false;
        Some(format!("{q}\n").into_bytes())
    }

    /// When [`Survey::poll_transmit`] should be called again without new input.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.outcome.is_some() {
            return None;
        }
        let sent = self.sent_at?;
        Some(if self.resent { sent + self.cfg.answer_timeout } else { sent + self.cfg.answer_timeout / 2 })
    }

    /// What the port read.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        while let Some(end) = self.rx.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.rx.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim().to_string();
            if !text.is_empty() && self.outcome.is_none() {
                self.handle_line(&text);
            }
        }
    }

    fn handle_line(&mut self, line: &str) {
        let asking = QUESTIONS[self.asking];
        match parse_response(line) {
            Response::Ok if self.sent_at.is_some() => {
                // A resent question may be answered twice; the second `ok` of `$I` can arrive
                // while `$$` is asked, and is then taken for its answer only if the settings
                // already came (they precede their `ok`).
                if asking == "$$" && self.profile.settings.is_empty() {
                    return;
                }
                self.asking += 1;
                if self.asking == QUESTIONS.len() {
                    if !self.axes_reported {
                        self.profile.axis_letters = "XYZ".into();
                    }
                    self.outcome = Some(Ok(std::mem::take(&mut self.profile)));
                } else {
                    self.pending = Some(QUESTIONS[self.asking]);
                    self.sent_at = None;
                }
            }
            Response::Error { code } => {
                let hint = match code {
                    8 => " (busy: grbl answers $$ only when idle; wait for the machine to stop)",
                    3 | 1 | 20 => " (not a grbl 1.1 controller?)",
                    _ => "",
                };
                self.outcome = Some(Err(SurveyError::Refused { command: asking, code, hint }));
            }
            Response::Alarm { .. } => self.outcome = Some(Err(SurveyError::Alarm { line: line.to_string() })),
            Response::Feedback(Feedback::Version { version, build_info }) => {
                self.profile.version =
                    Some(if build_info.is_empty() { version } else { format!("{version} ({build_info})") });
            }
            Response::Feedback(Feedback::Info { tag, text }) if tag == "AXS" => {
                // grblHAL: `[AXS:5:XYZAB]`.
                if let Some((_, letters)) = text.split_once(':') {
                    self.profile.axis_letters = letters.trim().to_ascii_uppercase();
                    self.axes_reported = true;
                }
            }
            Response::Feedback(Feedback::Setting { key, value }) => {
                if let (Ok(k), Ok(v)) = (key.parse::<u16>(), value.trim().parse::<f64>()) {
                    if v.is_finite() {
                        self.profile.settings.insert(k, v);
                    }
                }
            }
            _ => {} // banners, messages, status reports: not part of the answer
        }
    }

    /// Whether a question went out twice (its second answer may still be on its way).
    pub fn asked_twice(&self) -> bool {
        self.resent
    }

    /// The outcome, once there is one.
    pub fn outcome(&self) -> Option<&Result<ControllerProfile, SurveyError>> {
        self.outcome.as_ref()
    }

    /// Takes the outcome.
    pub fn take_outcome(&mut self) -> Option<Result<ControllerProfile, SurveyError>> {
        self.outcome.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::AxisRange;

    fn run(answers: &[&str]) -> Result<ControllerProfile, SurveyError> {
        let mut s = Survey::new(SurveyConfig::default());
        let mut sent = Vec::new();
        let mut answers = answers.iter();
        let mut t = Duration::ZERO;
        for _ in 0..10 {
            if let Some(b) = s.poll_transmit(t) {
                sent.push(String::from_utf8_lossy(&b).to_string());
                if let Some(a) = answers.next() {
                    s.handle_bytes(a.as_bytes());
                }
            }
            if let Some(o) = s.take_outcome() {
                return o;
            }
            t += Duration::from_millis(100);
        }
        Err(SurveyError::NoAnswer { command: "test", waited_s: 0.0 })
    }

    fn needs(axes: &[(char, f64, f64)], s: f64) -> MachineNeeds {
        MachineNeeds {
            axes: axes.iter().map(|&(letter, min, max)| AxisRange { letter, min, max }).collect(),
            max_spindle_rpm: s,
            min_spindle_rpm: s,
        }
    }

    const GRBL_INFO: &str = "[VER:1.1h.20190825:]\r\n[OPT:V,15,128]\r\nok\r\n";
    const GRBL_SETTINGS: &str =
        "$0=10\r\n$30=12000.000\r\n$31=0.000\r\n$32=0\r\n$130=200.000\r\n$131=200.000\r\n$132=80.000\r\nok\r\n";

    #[test]
    fn grbl_without_axis_report_drives_xyz() {
        let p = run(&[GRBL_INFO, GRBL_SETTINGS]).expect("profile");
        assert_eq!(p.axis_letters, "XYZ");
        assert_eq!(p.version.as_deref(), Some("1.1h.20190825"));
        assert_eq!(p.settings.get(&30), Some(&12000.0));
        assert!(p.check(&needs(&[('X', 10.0, 150.0), ('Z', -5.0, 60.0)], 10000.0)).is_empty());
    }

    #[test]
    fn each_unsuitable_setting_is_named_with_its_fix() {
        let p = run(&[GRBL_INFO, GRBL_SETTINGS]).expect("profile");
        let found =
            p.check(&needs(&[('X', 0.0, 250.0), ('Z', 0.0, 10.0), ('A', -30.0, 30.0), ('B', 0.0, 5.0)], 15000.0));
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 3, "{text:#?}");
        assert!(text[0].contains("axis A, B") && text[0].contains("X, Y, Z"), "{}", text[0]);
        assert!(text[1].contains("`$30=12000`") && text[1].contains("set `$30=15000`"), "{}", text[1]);
        assert!(text[2].contains("`$130=200`") && text[2].contains("over 250"), "{}", text[2]);
        let laser = run(&[GRBL_INFO, "$30=12000\r\n$32=1\r\nok\r\n"]).expect("profile");
        let t: Vec<String> = laser.check(&needs(&[], 1000.0)).iter().map(ToString::to_string).collect();
        assert!(t.len() == 1 && t[0].contains("$32=0"), "{t:?}");
    }

    #[test]
    fn grblhal_reports_its_axes_and_their_travel() {
        let info = "[VER:1.1f.20230610:]\r\n[OPT:VNMSL,35,1024,5,0]\r\n[AXS:5:XYZAB]\r\n[FIRMWARE:grblHAL]\r\nok\r\n";
        let settings = "$30=24000\r\n$130=300\r\n$131=300\r\n$132=100\r\n$133=90\r\n$134=360\r\nok\r\n";
        let p = run(&[info, settings]).expect("profile");
        assert_eq!(p.axis_letters, "XYZAB");
        assert!(p.check(&needs(&[('A', -40.0, 40.0), ('B', 0.0, 300.0)], 10000.0)).is_empty());
        let t = p.check(&needs(&[('A', -50.0, 50.0)], 10000.0));
        assert!(t.len() == 1 && t[0].problem.contains("`$133=90`"), "{t:?}");
    }

    #[test]
    fn refusals_alarms_and_silence_are_errors_that_say_what_to_do() {
        assert!(matches!(run(&["error:8\r\n"]), Err(SurveyError::Refused { code: 8, .. })));
        assert!(matches!(run(&[GRBL_INFO, "ALARM:1\r\n"]), Err(SurveyError::Alarm { .. })));
        let mut s = Survey::new(SurveyConfig { answer_timeout: Duration::from_secs(2) });
        assert_eq!(s.poll_transmit(Duration::ZERO).as_deref(), Some(&b"$I\n"[..]));
        assert_eq!(s.poll_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(s.poll_transmit(Duration::from_secs(1)).as_deref(), Some(&b"$I\n"[..]), "asked once more");
        assert_eq!(s.poll_transmit(Duration::from_millis(1500)), None);
        assert_eq!(s.poll_transmit(Duration::from_secs(2)), None);
        assert!(matches!(s.take_outcome(), Some(Err(SurveyError::NoAnswer { command: "$I", .. }))));
    }

    #[test]
    fn a_banner_and_status_reports_in_between_are_ignored_and_a_doubled_answer_is_harmless() {
        let p = run(&[
            "\r\nGrbl 1.1h ['$' for help]\r\n<Idle|MPos:0.000,0.000,0.000|FS:0,0>\r\n[VER:1.1h.20190825:]\r\n[OPT:V,15,128]\r\nok\r\nok\r\n",
            GRBL_SETTINGS,
        ])
        .expect("profile");
        assert_eq!(p.settings.get(&132), Some(&80.0));
    }
}
