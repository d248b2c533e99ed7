//! The scalp map vision produces and the planner consumes (map.json).

use serde::{Deserialize, Serialize};

use crate::error::{check_range, check_version, parse_json, SpecError};
use crate::geometry::{PoseSpec, SurfacePatch};
use crate::JSON_FORMAT_VERSION;

/// What a patch of scalp is, as vision classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// Not seen, or outside the scanned surface.
    Outside,
    Hair,
    Thinning,
    Bald,
    Scar,
}

impl RegionKind {
    pub fn code(self) -> char {
        match self {
            RegionKind::Outside => '.',
            RegionKind::Hair => 'H',
            RegionKind::Thinning => 'T',
            RegionKind::Bald => 'B',
            RegionKind::Scar => 'S',
        }
    }

    pub fn from_code(c: char) -> Option<Self> {
        Some(match c {
            '.' => RegionKind::Outside,
            'H' => RegionKind::Hair,
            'T' => RegionKind::Thinning,
            'B' => RegionKind::Bald,
            'S' => RegionKind::Scar,
            _ => return None,
        })
    }
}

/// A raster over the surface patch's (x, y) domain; each row is a string of one-letter
/// codes so that map.json stays readable. Row 0 is the lowest y.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellGrid {
    pub origin_x_mm: f64,
    pub origin_y_mm: f64,
    pub cell_mm: f64,
    pub nx: usize,
    pub ny: usize,
    pub rows: Vec<String>,
}

impl CellGrid {
    pub fn filled(origin_x_mm: f64, origin_y_mm: f64, cell_mm: f64, nx: usize, ny: usize, code: char) -> Self {
        CellGrid { origin_x_mm, origin_y_mm, cell_mm, nx, ny, rows: vec![code.to_string().repeat(nx); ny] }
    }

    pub fn validate(&self, what: &'static str, field: &str, allowed: &str) -> Result<(), SpecError> {
        check_range(what, &format!("{field}.cell_mm"), self.cell_mm, 1e-3, 1e3)?;
        check_range(what, &format!("{field}.origin_x_mm"), self.origin_x_mm, -1e4, 1e4)?;
        check_range(what, &format!("{field}.origin_y_mm"), self.origin_y_mm, -1e4, 1e4)?;
        if self.rows.len() != self.ny {
            return Err(SpecError::invalid(
                what,
                format!("{field}.rows"),
                format!("has {} rows, ny is {}", self.rows.len(), self.ny),
            ));
        }
        for (i, r) in self.rows.iter().enumerate() {
            if r.chars().count() != self.nx {
                return Err(SpecError::invalid(
                    what,
                    format!("{field}.rows[{i}]"),
                    format!("has {} cells, nx is {}", r.chars().count(), self.nx),
                ));
            }
            if let Some(c) = r.chars().find(|c| !allowed.contains(*c)) {
                return Err(SpecError::invalid(
                    what,
                    format!("{field}.rows[{i}]"),
                    format!("holds `{c}`; allowed codes are `{allowed}`"),
                ));
            }
        }
        Ok(())
    }

    /// Cell indices of a point, if it lies on the grid.
    pub fn cell_of(&self, x_mm: f64, y_mm: f64) -> Option<(usize, usize)> {
        let i = ((x_mm - self.origin_x_mm) / self.cell_mm).floor();
        let j = ((y_mm - self.origin_y_mm) / self.cell_mm).floor();
        if i < 0.0 || j < 0.0 || !i.is_finite() || !j.is_finite() {
            return None;
        }
        let (i, j) = (i as usize, j as usize);
        (i < self.nx && j < self.ny).then_some((i, j))
    }

    pub fn code_at_cell(&self, i: usize, j: usize) -> char {
        self.rows[j].as_bytes()[i] as char
    }

    /// Code at a point; `.` off the grid.
    pub fn code_at(&self, x_mm: f64, y_mm: f64) -> char {
        self.cell_of(x_mm, y_mm).map_or('.', |(i, j)| self.code_at_cell(i, j))
    }

    pub fn set(&mut self, i: usize, j: usize, code: char) {
        let mut bytes = std::mem::take(&mut self.rows[j]).into_bytes();
        bytes[i] = code as u8;
        self.rows[j] = String::from_utf8(bytes).unwrap_or_default();
    }

    /// Centre of a cell in patch coordinates.
    pub fn cell_centre(&self, i: usize, j: usize) -> (f64, f64) {
        (self.origin_x_mm + (i as f64 + 0.5) * self.cell_mm, self.origin_y_mm + (j as f64 + 0.5) * self.cell_mm)
    }

    pub fn count(&self, code: char) -> usize {
        self.rows.iter().map(|r| r.chars().filter(|c| *c == code).count()).sum()
    }
}

/// Natural follicle, or a pigment dot of an earlier SMP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollicleKind {
    Natural,
    SmpDot,
}

/// A detected follicle (or earlier dot) in the head frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Follicle {
    pub x_mm: f64,
    pub y_mm: f64,
    pub z_mm: f64,
    pub normal: [f64; 3],
    pub diameter_mm: f64,
    /// 0 = skin, 1 = black.
    pub darkness: f64,
    pub kind: FollicleKind,
}

impl Follicle {
    pub fn position(&self) -> [f64; 3] {
        [self.x_mm, self.y_mm, self.z_mm]
    }
}

/// Skin colour under the rig's known light.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkinTone {
    pub lab: [f64; 3],
    /// Individual typology angle, degrees.
    pub ita_deg: f64,
    pub fitzpatrick: u8,
}

/// Everything vision knows about one scan of the scalp, in the head frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalpMap {
    pub version: u32,
    /// Registration used to bring camera measurements into the head frame.
    pub base_from_head: PoseSpec,
    pub surface: SurfacePatch,
    /// Region labels over the surface's (x, y) domain.
    pub regions: CellGrid,
    pub follicles: Vec<Follicle>,
    pub skin: Option<SkinTone>,
    /// Partial input that still gave a usable map (a missing view, a low-contrast tile...).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl ScalpMap {
    pub const WHAT: &'static str = "scalp map";

    pub fn from_json_str(text: &str) -> Result<Self, SpecError> {
        let map: ScalpMap = parse_json(Self::WHAT, text)?;
        map.validate()?;
        Ok(map)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        check_version(Self::WHAT, self.version, JSON_FORMAT_VERSION)?;
        self.base_from_head.validate(Self::WHAT, "base_from_head")?;
        self.surface.validate()?;
        self.regions.validate(Self::WHAT, "regions", ".HTBS")?;
        for (i, f) in self.follicles.iter().enumerate() {
            let field = format!("follicles[{i}]");
            for (name, v) in [("x_mm", f.x_mm), ("y_mm", f.y_mm), ("z_mm", f.z_mm)] {
                check_range(Self::WHAT, &format!("{field}.{name}"), v, -1e4, 1e4)?;
            }
            check_range(Self::WHAT, &format!("{field}.diameter_mm"), f.diameter_mm, 0.0, 10.0)?;
            check_range(Self::WHAT, &format!("{field}.darkness"), f.darkness, 0.0, 1.0)?;
        }
        Ok(())
    }
}
