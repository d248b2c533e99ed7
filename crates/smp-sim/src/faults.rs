//! Fault scenarios: the `sim/faults/*.toml` files that make a simulated session go wrong on
//! purpose, reproducibly.
//!
//! A scenario holds three lists. `controller` faults are injected by the simulated grbl
//! ([`crate::controller::FaultPlan`], via [`FaultScenario::fault_plan`]); `camera_drops` are
//! data for the capture pipeline; `head_moves` move the simulated patient under the needle
//! through [`crate::motion_model::MovingSkin`] ([`FaultScenario::head_motion`]). Everything random is drawn from streams seeded by `seed`, so a scenario replays
//! exactly: a recovery bug found once is found every time.

use std::path::{Path, PathBuf};

use nalgebra::Isometry3;
use serde::{Deserialize, Serialize};
use smp_core::error::{check_version, parse_toml};
use smp_core::SpecError;
use thiserror::Error;

use crate::controller::{ControllerConfig, Fault, FaultPlan};
use crate::motion_model::{HeadMotion, MotionError};

/// The scenario format this build reads.
pub const FAULT_SCENARIO_VERSION: u32 = 1;
const WHAT: &str = "fault scenario";
/// Largest head movement accepted, mm: beyond this the patient has left the rest and the
/// session must stop anyway; a larger value is almost surely a unit mistake.
pub const MAX_HEAD_MOVE_MM: f64 = 50.0;
/// Largest head turn accepted per move, degrees (a head on a rest turns a few degrees; tens
/// of degrees means radians were meant, or the patient got up).
pub const MAX_HEAD_TURN_DEG: f64 = 30.0;

/// A scenario file that cannot be used.
#[derive(Debug, Error)]
pub enum FaultFileError {
    #[error("cannot read fault scenario {path}: {source}; check the path")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Spec { path: PathBuf, source: SpecError },
}

/// One `sim/faults/*.toml` file. See sim/README.md, section Faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultScenario {
    pub version: u32,
    /// Seed of every random draw the scenario causes (byte loss and corruption).
    pub seed: u64,
    #[serde(default)]
    pub description: String,
    /// Faults the simulated controller injects.
    #[serde(default)]
    pub controller: Vec<Fault>,
    /// Camera frames that never arrive.
    #[serde(default)]
    pub camera_drops: Vec<CameraFrameDrop>,
    /// Movements of the patient's head during the session.
    #[serde(default)]
    pub head_moves: Vec<HeadMove>,
    /// Spans of session time when the band cameras see no marker (a hand or a towel over
    /// the band): tracking must notice and hold the arm until the markers are back.
    #[serde(default)]
    pub band_occlusions: Vec<BandOcclusion>,
}

/// The head band hidden from every band camera from `from_s` to `to_s` (session time, s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandOcclusion {
    pub from_s: f64,
    pub to_s: f64,
}

/// A camera frame that is lost: named by the capture's view label, or by its 0-based index
/// among the session's captures (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraFrameDrop {
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub frame_index: Option<u64>,
}

impl CameraFrameDrop {
    /// True when this drop names the capture with this label and index.
    pub fn matches(&self, view: &str, frame_index: u64) -> bool {
        self.view.as_deref() == Some(view) || self.frame_index == Some(frame_index)
    }
}

/// The head jumps by `translation_mm` (head frame: +x nose, +y patient's left, +z vertex) at
/// session time `time_s`, optionally turning by `rotation_deg` (roll, pitch, yaw about the
/// head frame's x, y, z, about the head centre), and stays there: the pose the arm
/// registered is then wrong by exactly this motion until the host re-registers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadMove {
    pub time_s: f64,
    pub translation_mm: [f64; 3],
    /// Turn of the head about its centre, degrees (roll, pitch, yaw in the head frame).
    #[serde(default, skip_serializing_if = "is_zero3")]
    pub rotation_deg: [f64; 3],
}

fn is_zero3(v: &[f64; 3]) -> bool {
    *v == [0.0; 3]
}

impl HeadMove {
    /// A pure translation (no turn).
    pub fn shift(time_s: f64, translation_mm: [f64; 3]) -> Self {
        HeadMove { time_s, translation_mm, rotation_deg: [0.0; 3] }
    }

    /// Length of the movement's translation, mm.
    pub fn distance_mm(&self) -> f64 {
        let [x, y, z] = self.translation_mm;
        (x * x + y * y + z * z).sqrt()
    }

    /// Angle of the movement's turn, degrees.
    pub fn turn_deg(&self) -> f64 {
        self.rotation().angle().to_degrees()
    }

    /// The turn as a rotation of the head frame.
    pub fn rotation(&self) -> nalgebra::UnitQuaternion<f64> {
        let [r, p, y] = self.rotation_deg;
        nalgebra::UnitQuaternion::from_euler_angles(r.to_radians(), p.to_radians(), y.to_radians())
    }

    /// The movement as a pose change in the head frame: `head_before_from_head_after`.
    pub fn head_delta(&self) -> Isometry3<f64> {
        Isometry3::from_parts(
            nalgebra::Translation3::from(nalgebra::Vector3::from(self.translation_mm)),
            self.rotation(),
        )
    }
}

/// Only the version, read first so that a file of another version gets the version error,
/// not a confusing unknown-field error.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u32>,
}

impl FaultScenario {
    /// True when the band is hidden at session time `t_s`.
    pub fn band_hidden_at(&self, t_s: f64) -> bool {
        self.band_occlusions.iter().any(|o| t_s >= o.from_s && t_s < o.to_s)
    }

    /// Parses and validates a scenario; errors name the field and the fix.
    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        let probe: VersionOnly = parse_toml(WHAT, text)?;
        match probe.version {
            None => {
                return Err(SpecError::invalid(
                    WHAT,
                    "version",
                    format!("is missing; add `version = {FAULT_SCENARIO_VERSION}`"),
                ))
            }
            Some(v) => check_version(WHAT, v, FAULT_SCENARIO_VERSION)?,
        }
        let scenario: FaultScenario = parse_toml(WHAT, text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    pub fn from_path(path: &Path) -> Result<Self, FaultFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| FaultFileError::Io { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text).map_err(|source| FaultFileError::Spec { path: path.to_path_buf(), source })
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        check_version(WHAT, self.version, FAULT_SCENARIO_VERSION)?;
        self.fault_plan().validate(WHAT)?;
        for (i, drop) in self.camera_drops.iter().enumerate() {
            match (&drop.view, drop.frame_index) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(SpecError::invalid(
                        WHAT,
                        format!("camera_drops[{i}]"),
                        "must name exactly one of `view` (a capture label) or `frame_index` (0-based)",
                    ))
                }
                (Some(v), None) if v.trim().is_empty() => {
                    return Err(SpecError::invalid(
                        WHAT,
                        format!("camera_drops[{i}].view"),
                        "is empty; give the capture's view label, e.g. \"tile003\"",
                    ))
                }
                _ => {}
            }
        }
        for (i, o) in self.band_occlusions.iter().enumerate() {
            if !(o.from_s.is_finite() && o.to_s.is_finite() && o.from_s >= 0.0 && o.to_s > o.from_s) {
                return Err(SpecError::invalid(
                    WHAT,
                    format!("band_occlusions[{i}]"),
                    format!("spans {} to {} s; give session times with 0 <= from_s < to_s", o.from_s, o.to_s),
                ));
            }
        }
        for (i, m) in self.head_moves.iter().enumerate() {
            if !(m.time_s.is_finite() && m.time_s >= 0.0) {
                return Err(SpecError::invalid(
                    WHAT,
                    format!("head_moves[{i}].time_s"),
                    format!("is {}; use a session time >= 0 s", m.time_s),
                ));
            }
            let d = m.distance_mm();
            if !d.is_finite() || d > MAX_HEAD_MOVE_MM {
                return Err(SpecError::invalid(
                    WHAT,
                    format!("head_moves[{i}].translation_mm"),
                    format!("has length {d} mm; use a finite vector of at most {MAX_HEAD_MOVE_MM} mm (units are mm)"),
                ));
            }
            if m.rotation_deg.iter().any(|v| !v.is_finite()) || m.turn_deg() > MAX_HEAD_TURN_DEG {
                return Err(SpecError::invalid(
                    WHAT,
                    format!("head_moves[{i}].rotation_deg"),
                    format!(
                        "turns the head by {:.1} degrees; use finite roll, pitch, yaw in degrees, at most {MAX_HEAD_TURN_DEG} in all",
                        m.turn_deg()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The controller's share of the scenario (seed it with [`FaultScenario::seed`], or use
    /// [`FaultScenario::apply_to`]).
    pub fn fault_plan(&self) -> FaultPlan {
        FaultPlan { faults: self.controller.clone() }
    }

    /// Installs the controller faults and their seed in a controller configuration.
    pub fn apply_to(&self, cfg: &mut ControllerConfig) {
        cfg.faults = self.fault_plan();
        cfg.fault_seed = self.seed;
    }

    /// The scenario's head moves as a [`HeadMotion`] for a [`crate::motion_model::MovingSkin`]
    /// (or use `MovingSkin::from_scenario`); `base_from_head` is the registered head pose that
    /// carries the head-frame translations into the base frame. The session time of a move
    /// is taken as the controller's machine time.
    pub fn head_motion(&self, base_from_head: &Isometry3<f64>) -> Result<HeadMotion, MotionError> {
        HeadMotion::from_scenario(self, base_from_head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sim/faults")
    }

    fn err_of(text: &str) -> String {
        match FaultScenario::from_toml_str(text) {
            Ok(s) => panic!("accepted: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_shipped_scenario_parses_and_each_kind_is_shipped() {
        let mut kinds = std::collections::BTreeSet::new();
        let mut files = 0;
        let entries = match std::fs::read_dir(shipped_dir()) {
            Ok(e) => e,
            Err(e) => panic!("sim/faults missing: {e}"),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let s = match FaultScenario::from_path(&path) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            assert!(!s.description.is_empty(), "{} has no description", path.display());
            files += 1;
            for f in &s.controller {
                let kind = match toml::Value::try_from(f) {
                    Ok(toml::Value::Table(t)) => t.get("kind").and_then(|k| k.as_str()).map(str::to_string),
                    _ => None,
                };
                kinds.extend(kind);
            }
            if !s.camera_drops.is_empty() {
                kinds.insert("camera_drop".to_string());
            }
            if !s.head_moves.is_empty() {
                kinds.insert("head_move".to_string());
            }
            if !s.band_occlusions.is_empty() {
                kinds.insert("band_occlusion".to_string());
            }
        }
        assert!(files >= 10, "{files} files");
        for k in [
            "byte_loss",
            "byte_corruption",
            "disconnect_at_line",
            "reset_before_line",
            "reset_at_time",
            "lost_ok",
            "alarm_at_line",
            "camera_drop",
            "head_move",
            "band_occlusion",
            "feed_rate_at_time",
        ] {
            assert!(kinds.contains(k), "no shipped scenario has {k}: {kinds:?}");
        }
    }

    #[test]
    fn a_band_occlusion_must_span_forward_in_time() {
        let ok = "version = 1\nseed = 1\n[[band_occlusions]]\nfrom_s = 2.0\nto_s = 3.0\n";
        let s = match FaultScenario::from_toml_str(ok) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(!s.band_hidden_at(1.99) && s.band_hidden_at(2.0) && s.band_hidden_at(2.99) && !s.band_hidden_at(3.0));
        let e = err_of("version = 1\nseed = 1\n[[band_occlusions]]\nfrom_s = 3.0\nto_s = 2.0\n");
        assert!(e.contains("band_occlusions[0]"), "{e}");
    }

    #[test]
    fn combined_scenario_exposes_every_list() {
        let s = match FaultScenario::from_path(&shipped_dir().join("combined.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut cfg = ControllerConfig::default();
        s.apply_to(&mut cfg);
        assert_eq!(cfg.fault_seed, 20);
        assert_eq!(cfg.faults.faults, s.controller);
        assert!(cfg.validate().is_ok());
        assert_eq!(s.controller.len(), 4);
        assert_eq!(s.camera_drops, vec![CameraFrameDrop { view: Some("overview".into()), frame_index: None }]);
        assert_eq!(s.head_moves, vec![HeadMove::shift(30.0, [1.0, 0.0, 0.0])]);
        let h = match FaultScenario::from_path(&shipped_dir().join("head_move.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!((h.head_moves[0].distance_mm() - 1.5811).abs() < 1e-3);
        let motion = match h.head_motion(&Isometry3::identity()) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        let m = h.head_moves[0];
        assert_eq!(motion.head_offset_base_mm(m.time_s - 1e-6).norm(), 0.0);
        assert!((motion.head_offset_base_mm(m.time_s).norm() - m.distance_mm()).abs() < 1e-12);
        let c = match FaultScenario::from_path(&shipped_dir().join("camera_frame_drop.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(c.camera_drops[0].matches("tile003", 0));
        assert!(c.camera_drops[1].matches("other", 7));
        assert!(!c.camera_drops[1].matches("other", 6));
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let e = err_of("seed = 1\n");
        assert!(e.contains("version") && e.contains("version = 1"), "{e}");
        let e = err_of("version = 2\nseed = 1\nnew_thing = 3\n");
        assert!(e.contains("version 2") && e.contains("version 1"), "{e}");
        let e = err_of("version = 1\nseed = 1\nsede = 2\n");
        assert!(e.contains("sede"), "{e}");
        let e = err_of("version = 1\n");
        assert!(e.contains("seed"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[controller]]\nkind = \"byte_loss\"\nrate = 1.5\n");
        assert!(e.contains("controller[0].rate") && e.contains("[0, 1]"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[controller]]\nkind = \"lost_ok\"\nline = 0\n");
        assert!(e.contains("controller[0].line"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[controller]]\nkind = \"alarm_at_line\"\nline = 3\ncode = 42\n");
        assert!(e.contains("controller[0].code") && e.contains("1-9"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[controller]]\nkind = \"meteor\"\n");
        assert!(e.contains("meteor"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[controller]]\nkind = \"lost_ok\"\nline = 3\nrate = 0.1\n");
        assert!(e.contains("rate"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[camera_drops]]\nview = \"a\"\nframe_index = 2\n");
        assert!(e.contains("camera_drops[0]") && e.contains("exactly one"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[camera_drops]]\n");
        assert!(e.contains("camera_drops[0]"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[head_moves]]\ntime_s = 1.0\ntranslation_mm = [0.0, 0.0, 100.0]\n");
        assert!(e.contains("head_moves[0].translation_mm"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[head_moves]]\ntime_s = -1.0\ntranslation_mm = [0.0, 0.0, 1.0]\n");
        assert!(e.contains("head_moves[0].time_s"), "{e}");
        let e = err_of("version = 1\nseed = 1\n[[controller]]\nkind = \"reset_at_time\"\ntime_s = nan\n");
        assert!(e.contains("controller[0].time_s"), "{e}");
        match FaultScenario::from_path(Path::new("/nonexistent/x.toml")) {
            Err(e @ FaultFileError::Io { .. }) => assert!(e.to_string().contains("/nonexistent/x.toml")),
            other => panic!("{other:?}"),
        }
    }
}
