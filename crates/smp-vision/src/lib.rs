//! OpenCV vision: finds the scalp in the overview photo, plans the flange-camera scan, and
//! turns the scan tiles into a [`smp_core::map::ScalpMap`] (surface, follicles, regions,
//! skin tone).
//!
//! Invariant: vision works from pixels, depth frames and camera poses only. It never sees
//! the simulator's ground truth, so the figures the tests measure against that truth are
//! honest. Partial input that still gives a usable answer yields warnings in the map; `Err`
//! only where the work cannot continue, with a message that names the view and what to check.
//!
//! Conventions (see ARCHITECTURE.md): millimetres inside, degrees in configuration; a
//! transform `a_from_b` maps points in frame `b` into frame `a`; camera frames follow OpenCV.
//!
//! Pipeline:
//! 1. [`find_scalp`]: overview photo + depth -> [`ScalpOutline`] (head mask, 3-D points).
//! 2. [`scan_positions`]: outline -> serpentine flange-camera machine positions.
//! 3. [`build_map`]: tiles -> surface fit, follicle detections (each classified as a natural
//!    follicle or an earlier SMP dot by [`classify`]), region grid, skin tone.

pub mod calibrate;
pub mod capture;
pub mod classify;
mod cv;
pub mod dot_check;
mod error;
pub mod fiducials;
pub mod follicles;
mod follicles_contrast;
mod mapping;
pub mod projection;
mod rim_noise;
mod scalp;
mod scan;
pub mod skin_response;
pub mod surface;
#[cfg(test)]
mod test_noise;
pub mod tone;
pub mod tracking;

pub use classify::{dot_features, DotClassifier, DotFeatures};
pub use error::VisionError;
pub use follicles::{detect_dark_dots, detect_dots, DotDetection, FolliclePolarity, Polarity};
pub use mapping::{build_map, MapOutput, TileDetections};
pub use scalp::{find_scalp, ScalpOutline};
pub use scan::{scan_positions, tile_footprint_mm};

use serde::{Deserialize, Serialize};

/// Tuning of every vision stage. The defaults suit the default simulated rig
/// (flange camera ~25 px/mm at its standoff, overview camera ~5 px/mm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisionConfig {
    // --- overview / scalp segmentation ---
    /// Pixels darker than this (grey level) are never head: the backdrop is dark.
    pub backdrop_max_level: u8,
    /// Smallest head blob, as a fraction of the overview frame; smaller means "no head".
    pub min_head_area_fraction: f64,
    /// Morphology kernel (px) closing holes (hair, shadows) in the head mask.
    pub mask_close_px: i32,
    /// Subsampling of the overview's head pixels when building 3-D outline points.
    pub overview_stride_px: usize,

    // --- scan planning ---
    /// Radius of the local plane fits that estimate surface normals from outline points.
    pub normal_radius_mm: f64,
    /// Extra tilt beyond the treatable limit that is still imaged, so the edge of the
    /// treatable area lies inside tiles rather than on their border.
    pub tilt_margin_deg: f64,
    /// Extra spatial margin around the selected footprint, mm.
    pub coverage_margin_mm: f64,
    /// Fractional overlap of neighbouring tiles (0.2 = 20 %).
    pub tile_overlap: f64,

    // --- surface ---
    /// Use every n-th depth pixel in x and y of each tile for the surface fit.
    pub depth_stride_px: usize,
    /// Degree of the polynomial height field. 8 rather than 4: over the ~110 mm wide scan of
    /// the default head a degree-4 fit leaves up to 0.7 mm of height error at the scan's
    /// edge (which moved follicles by 0.3 mm and more). Measured with `smp demo` on the
    /// default patient at 35° max tilt: degree 6 gave placement RMS 0.084 mm and fit RMS
    /// 0.088 mm, degree 8 placement RMS 0.010 mm and fit RMS 0.032 mm (the 0.03 mm depth
    /// noise being most of it).
    pub surface_degree: usize,
    /// Points with residual beyond `outlier_sigma * rms` (at least `outlier_min_mm`) are
    /// dropped before the single re-fit.
    pub outlier_sigma: f64,
    pub outlier_min_mm: f64,

    // --- follicles ---
    /// Expected follicle diameter on the skin, mm: sets the black-hat kernel and the
    /// accepted blob areas.
    pub follicle_diameter_mm: f64,
    /// Black-hat kernel diameter as a multiple of the expected follicle diameter.
    pub blackhat_kernel_factor: f64,
    /// Detection threshold in robust noise sigmas of the black-hat image.
    pub detect_sigma: f64,
    /// Detection threshold floor in grey levels, so a clean image does not detect noise.
    pub min_contrast_levels: f64,
    /// ... lowered on darker skin to this fraction of the skin's grey level (a follicle's
    /// contrast is a reflectance ratio, so it has fewer grey levels on dark skin); the noise
    /// threshold still applies. 0.07 keeps the fixed floor on skin of grey 170 and above.
    pub min_contrast_fraction: f64,
    /// Accepted blob area relative to the expected follicle area.
    pub min_area_factor: f64,
    pub max_area_factor: f64,
    /// Largest bounding-box aspect ratio of an accepted blob.
    pub max_aspect: f64,
    /// Which polarities the follicle detector searches: dark hair and pigment are darker
    /// than the skin, blond or grey stubble on dark skin lighter (`auto`: both, the light
    /// detections kept when they form a population).
    pub follicle_polarity: follicles::FolliclePolarity,
    /// Follicles wider than this (px) are detected on an image area-downsampled by an
    /// integer factor, so the morphology kernel stays small on high-magnification close-ups.
    pub detect_max_diameter_px: f64,
    /// Blobs touching this close to the image border are dropped (cut follicles).
    pub border_px: i32,
    /// Half size of the depth window whose local fit gives a follicle's skin point and normal, pixels.
    pub local_depth_half_px: i32,
    /// Also detect dark dots on each tile's learnt colour projection when it separates the
    /// tile's follicles from its skin clearly better than grey (red hair on dark skin; see
    /// [`projection`]); off: grey only.
    pub colour_projection: bool,

    // --- regions ---
    pub cell_mm: f64,
    /// Radius over which follicle density is measured for each cell.
    pub density_radius_mm: f64,
    /// Density (per cm²) at or above which a cell is hair.
    pub hair_min_per_cm2: f64,
    /// Density (per cm²) at or above which a cell is thinning (below: bald).
    pub thinning_min_per_cm2: f64,
    /// Scar: how far a cell's colour moves from the median skin toward pink, as
    /// `(a* - a*_skin) + (b*_skin - b*)` in Lab units. Scar tissue is less yellow (and no
    /// less red) than skin; chroma is used because lighting and mottling move L* far more.
    pub scar_chroma_shift: f64,
    /// Scar tissue is lighter, never darker: a cell darker than the skin by more than this
    /// (L*) is not scar, whatever its chroma (shadows under hair turn grey-blue).
    pub scar_max_darker_l: f64,
    /// Fewest depth samples a cell needs to count as imaged.
    pub min_cell_samples: usize,

    // --- follicle or earlier SMP dot ---
    /// How each detection is classified as a natural follicle or an earlier SMP dot.
    pub dot_classifier: DotClassifier,

    // --- skin tone ---
    /// The flange camera's light (lamp position and ambient share), divided out of the skin
    /// colour; from the rig's calibration.
    pub flange_light: smp_core::color::Illumination,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            backdrop_max_level: 60,
            min_head_area_fraction: 0.02,
            mask_close_px: 15,
            overview_stride_px: 4,
            normal_radius_mm: 6.0,
            tilt_margin_deg: 2.0,
            coverage_margin_mm: 2.0,
            tile_overlap: 0.2,
            depth_stride_px: 4,
            surface_degree: 8,
            outlier_sigma: 4.0,
            outlier_min_mm: 0.05,
            follicle_diameter_mm: 0.3,
            blackhat_kernel_factor: 2.5,
            detect_sigma: 5.0,
            min_contrast_levels: 12.0,
            min_contrast_fraction: 0.07,
            min_area_factor: 0.15,
            max_area_factor: 5.0,
            max_aspect: 2.5,
            follicle_polarity: follicles::FolliclePolarity::Auto,
            detect_max_diameter_px: 9.0,
            border_px: 3,
            local_depth_half_px: 10,
            colour_projection: true,
            cell_mm: 2.0,
            density_radius_mm: 5.0,
            hair_min_per_cm2: 45.0,
            thinning_min_per_cm2: 8.0,
            scar_chroma_shift: 5.0,
            scar_max_darker_l: 3.0,
            min_cell_samples: 4,
            dot_classifier: DotClassifier::default(),
            flange_light: smp_core::color::Illumination::default(),
        }
    }
}

impl VisionConfig {
    /// Rejects settings that would make a stage meaningless (zero strides, inverted
    /// thresholds), naming the field.
    pub fn validate(&self) -> Result<(), VisionError> {
        let bad = |field: &'static str, problem: String| Err(VisionError::Config { field, problem });
        let positive = [
            ("normal_radius_mm", self.normal_radius_mm),
            ("follicle_diameter_mm", self.follicle_diameter_mm),
            ("blackhat_kernel_factor", self.blackhat_kernel_factor),
            ("detect_sigma", self.detect_sigma),
            ("cell_mm", self.cell_mm),
            ("density_radius_mm", self.density_radius_mm),
            ("outlier_sigma", self.outlier_sigma),
            ("max_aspect", self.max_aspect),
            ("detect_max_diameter_px", self.detect_max_diameter_px),
            ("max_area_factor", self.max_area_factor),
            ("min_contrast_fraction", self.min_contrast_fraction),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("is {v}; it must be a positive number"));
            }
        }
        if !(0.0..0.9).contains(&self.tile_overlap) {
            return bad("tile_overlap", format!("is {}; use a fraction in [0, 0.9)", self.tile_overlap));
        }
        if self.overview_stride_px == 0 || self.depth_stride_px == 0 {
            return bad("overview_stride_px/depth_stride_px", "must be at least 1".into());
        }
        if !(1..=8).contains(&self.surface_degree) {
            return bad("surface_degree", format!("is {}; use 1..=8", self.surface_degree));
        }
        if self.thinning_min_per_cm2 > self.hair_min_per_cm2 {
            return bad(
                "thinning_min_per_cm2",
                format!(
                    "is {} above hair_min_per_cm2 {}; thinning must be the lower threshold",
                    self.thinning_min_per_cm2, self.hair_min_per_cm2
                ),
            );
        }
        if let Err((field, problem)) = self.dot_classifier.validate() {
            return bad(field, problem);
        }
        if !(self.min_head_area_fraction > 0.0 && self.min_head_area_fraction < 1.0) {
            return bad(
                "min_head_area_fraction",
                format!("is {}; use a fraction in (0, 1)", self.min_head_area_fraction),
            );
        }
        Ok(())
    }
}
