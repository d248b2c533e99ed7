//! ChArUco calibration boards: the spec in `calibration/charuco.toml`, the geometry of its
//! inner corners and markers, and OpenCV's DICT_4X4_50 marker patterns.
//!
//! Why in the core: the simulator draws the board and vision detects it and calibrates from
//! it; both must agree on every corner's id and board position, and vision must not depend on
//! the simulator. So the pure definition lives here and both crates use it.
//!
//! Board frame (OpenCV 4.6 `cv::aruco::CharucoBoard::create`, checked against Debian's
//! libopencv-contrib 4.6.0): origin at the outer corner of the first square, +x along a row
//! of `squares_x` squares, +y down the printed page along `squares_y` squares, +z = x × y,
//! into the board; the printed face is seen from z < 0. Square (col, row) is white and holds
//! a marker when `col + row` is odd (the square at the origin is black); markers take ids
//! 0, 1, 2, ... row by row. Inner corner id `row * (squares_x - 1) + col` lies at
//! `((col + 1) * square_mm, (row + 1) * square_mm, 0)`.

use nalgebra::Point3;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{check_range, check_version, parse_toml, SpecError};

/// The board spec this build reads.
pub const CHARUCO_VERSION: u32 = 1;

/// The repository's board, embedded so tests and `smp calibrate sim` need no file path.
pub const DEFAULT_CHARUCO_TOML: &str = include_str!("../../../calibration/charuco.toml");

/// OpenCV's DICT_4X4_50, one `u16` per id: the 4 × 4 inner bits row by row, most significant
/// first, 1 = white. Generated from Debian's OpenCV 4.6.0 with
/// `Dictionary::getBitsFromByteList(getPredefinedDictionary(DICT_4X4_50)->bytesList.row(id), 4)`
/// (the `DICT_4X4_50_BYTES` table of `modules/aruco/src/predefined_dictionaries.hpp`).
pub const DICT_4X4_50: [u16; 50] = [
    0xb532, 0x0f9a, 0x332d, 0x9946, 0x549e, 0x79cd, 0x9e2e, 0xc4f2, 0xfeda, 0xcf56, //
    0xf991, 0x11a7, 0x0eb7, 0x2a0f, 0x24b1, 0x263e, 0x4665, 0x6600, 0x6c5e, 0x76af, //
    0x868b, 0xb02b, 0xccd5, 0xdd82, 0xfe47, 0x9471, 0xace4, 0xa554, 0x2123, 0x346f, //
    0x4415, 0x57b2, 0x9ecf, 0xf0cb, 0x08ae, 0x0929, 0x1875, 0x04ff, 0x0df6, 0x1c5a, //
    0x1718, 0x2a28, 0x328c, 0x38b2, 0x24e8, 0x2eeb, 0x2d3f, 0x4b64, 0x502e, 0x5013,
];

/// Why a board spec or a board render cannot be used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CharucoError {
    /// The TOML is malformed or a field is out of range.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Only DICT_4X4_50's bit patterns are compiled in.
    #[error("charuco board: dictionary `{0}` is not supported; use \"DICT_4X4_50\"")]
    Dictionary(String),
    /// The board needs more marker ids than the dictionary has.
    #[error("charuco board: {needed} markers needed but DICT_4X4_50 holds 50; use fewer squares")]
    TooManyMarkers { needed: usize },
}

/// A ChArUco board, as written in `calibration/charuco.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharucoBoard {
    pub version: u32,
    /// Squares along the board's x axis (columns).
    pub squares_x: u32,
    /// Squares along the board's y axis (rows).
    pub squares_y: u32,
    /// Side of one chessboard square, mm.
    pub square_mm: f64,
    /// Side of a marker's black outer square (border included), mm; less than `square_mm`.
    pub marker_mm: f64,
    /// OpenCV predefined dictionary; only "DICT_4X4_50".
    pub dictionary: String,
}

impl CharucoBoard {
    /// Parses and validates a board spec.
    pub fn from_toml_str(text: &str) -> Result<CharucoBoard, CharucoError> {
        let board: CharucoBoard = parse_toml("charuco board", text)?;
        board.validate()?;
        Ok(board)
    }

    /// The board in `calibration/charuco.toml` (embedded at build time).
    pub fn default_board() -> Result<CharucoBoard, CharucoError> {
        CharucoBoard::from_toml_str(DEFAULT_CHARUCO_TOML)
    }

    /// Checks ranges, the dictionary, and that the markers fit in it.
    pub fn validate(&self) -> Result<(), CharucoError> {
        const WHAT: &str = "charuco board";
        check_version(WHAT, self.version, CHARUCO_VERSION)?;
        for (field, v) in [("squares_x", self.squares_x), ("squares_y", self.squares_y)] {
            if !(2..=100).contains(&v) {
                return Err(SpecError::invalid(WHAT, field, format!("is {v}; it must lie in [2, 100]")).into());
            }
        }
        check_range(WHAT, "square_mm", self.square_mm, 0.1, 1000.0)?;
        check_range(WHAT, "marker_mm", self.marker_mm, 0.05, 1000.0)?;
        if self.marker_mm >= self.square_mm {
            return Err(SpecError::invalid(
                WHAT,
                "marker_mm",
                format!("is {} but must be less than square_mm ({})", self.marker_mm, self.square_mm),
            )
            .into());
        }
        if self.dictionary != "DICT_4X4_50" {
            return Err(CharucoError::Dictionary(self.dictionary.clone()));
        }
        let needed = self.marker_count();
        if needed > DICT_4X4_50.len() {
            return Err(CharucoError::TooManyMarkers { needed });
        }
        Ok(())
    }

    /// Markers on the board: one per white square.
    pub fn marker_count(&self) -> usize {
        (self.squares_x as usize * self.squares_y as usize) / 2
    }

    /// Inner chessboard corners, `(id, board position)`, in id order.
    pub fn inner_corners(&self) -> Vec<(u32, Point3<f64>)> {
        let (nx, ny) = (self.squares_x.saturating_sub(1), self.squares_y.saturating_sub(1));
        (0..ny)
            .flat_map(|row| (0..nx).map(move |col| (row, col)))
            .map(|(row, col)| {
                let p = Point3::new((col + 1) as f64 * self.square_mm, (row + 1) as f64 * self.square_mm, 0.0);
                (row * nx + col, p)
            })
            .collect()
    }

    /// Board position of inner corner `id`, mm; `None` for an id the board does not have
    /// (a detector reporting one means the wrong board spec was given).
    pub fn corner_mm(&self, id: u32) -> Option<Point3<f64>> {
        let nx = self.squares_x.checked_sub(1)?;
        let ny = self.squares_y.checked_sub(1)?;
        if nx == 0 || id >= nx * ny {
            return None;
        }
        let (row, col) = (id / nx, id % nx);
        Some(Point3::new((col + 1) as f64 * self.square_mm, (row + 1) as f64 * self.square_mm, 0.0))
    }

    /// Markers, `(id, corners in ArUco order)` in the board frame, in id order.
    pub fn markers(&self) -> Vec<(u32, [Point3<f64>; 4])> {
        let margin = 0.5 * (self.square_mm - self.marker_mm);
        let mut out = Vec::with_capacity(self.marker_count());
        for row in 0..self.squares_y {
            for col in 0..self.squares_x {
                if (row + col).is_multiple_of(2) {
                    continue;
                }
                let x0 = col as f64 * self.square_mm + margin;
                let y0 = row as f64 * self.square_mm + margin;
                let m = self.marker_mm;
                let id = out.len() as u32;
                out.push((
                    id,
                    [
                        Point3::new(x0, y0, 0.0),
                        Point3::new(x0 + m, y0, 0.0),
                        Point3::new(x0 + m, y0 + m, 0.0),
                        Point3::new(x0, y0 + m, 0.0),
                    ],
                ));
            }
        }
        out
    }

    /// Board size, mm (x, y).
    pub fn size_mm(&self) -> (f64, f64) {
        (self.squares_x as f64 * self.square_mm, self.squares_y as f64 * self.square_mm)
    }

    /// Whether the printed point at board `(x, y)` mm is white. Off the board: white paper
    /// (a printed board has a white margin, which ArUco detection relies on).
    pub fn is_white(&self, x_mm: f64, y_mm: f64) -> bool {
        let (w, h) = self.size_mm();
        if !(x_mm >= 0.0 && y_mm >= 0.0 && x_mm < w && y_mm < h) {
            return true;
        }
        let col = (x_mm / self.square_mm).floor() as u32;
        let row = (y_mm / self.square_mm).floor() as u32;
        if (row + col).is_multiple_of(2) {
            return false; // black square
        }
        // White square: a marker of 6 × 6 cells (black border + 4 × 4 bits) at its centre.
        let margin = 0.5 * (self.square_mm - self.marker_mm);
        let u = (x_mm - col as f64 * self.square_mm - margin) / self.marker_mm;
        let v = (y_mm - row as f64 * self.square_mm - margin) / self.marker_mm;
        if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
            return true; // the white rim around the marker
        }
        let id = (row * self.squares_x + col) / 2;
        aruco_4x4_is_white(id, u, v).unwrap_or(true)
    }
}

/// Whether the point at `(u, v)` of a DICT_4X4_50 marker is white, laid out as OpenCV's
/// `generateImageMarker` draws it: 6 × 6 cells, a one-cell black border around the 4 × 4
/// bits. `u` runs left to right and `v` top to bottom across the black square, both in
/// `[0, 1)`. `None` outside the square or for an id the dictionary does not hold.
///
/// Why shared: the ChArUco board and the patient's head-band fiducials must draw the same
/// patterns OpenCV detects; one copy of the layout keeps them from drifting apart.
pub fn aruco_4x4_is_white(id: u32, u: f64, v: f64) -> Option<bool> {
    if !((0.0..1.0).contains(&u) && (0.0..1.0).contains(&v)) {
        return None;
    }
    let bits = DICT_4X4_50.get(id as usize)?;
    let (cx, cy) = (((u * 6.0) as usize).min(5), ((v * 6.0) as usize).min(5));
    if cx == 0 || cy == 0 || cx == 5 || cy == 5 {
        return Some(false); // marker border
    }
    let bit = 15 - ((cy - 1) * 4 + (cx - 1));
    Some((bits >> bit) & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_board_geometry() {
        let b = CharucoBoard::default_board().expect("repository board parses");
        assert_eq!(b.size_mm(), (30.0, 24.0));
        let c = b.inner_corners();
        assert_eq!(c.len(), 9 * 7);
        assert_eq!(c[10].0, 10);
        assert!((c[10].1.x - 6.0).abs() < 1e-12 && (c[10].1.y - 6.0).abs() < 1e-12);
        assert_eq!(b.markers().len(), b.marker_count());
        let bad = CharucoBoard { square_mm: -1.0, ..b.clone() };
        assert!(matches!(bad.validate(), Err(CharucoError::Spec(SpecError::Invalid { .. }))));
        assert_eq!(b.corner_mm(62), Some(Point3::new(27.0, 21.0, 0.0)));
        assert_eq!(b.corner_mm(63), None);
    }
}
