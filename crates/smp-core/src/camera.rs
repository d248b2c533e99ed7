//! Pinhole camera with Brown-Conrady distortion, as OpenCV models it.
//!
//! Shared by the simulator (to render), vision (to back-project detections) and the planner
//! (to draw the mock-up), so that all three agree on what a pixel means.

use nalgebra::{Point2, Point3, Vector3};
use serde::{Deserialize, Serialize};

use crate::error::{check_range, SpecError};

/// Intrinsics in pixels plus distortion `k1 k2 p1 p2 k3` (OpenCV order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraIntrinsics {
    pub width_px: u32,
    pub height_px: u32,
    pub fx_px: f64,
    pub fy_px: f64,
    pub cx_px: f64,
    pub cy_px: f64,
    /// `[k1, k2, p1, p2, k3]`.
    #[serde(default)]
    pub distortion: [f64; 5],
}

impl CameraIntrinsics {
    pub fn validate(&self, what: &'static str, field: &str) -> Result<(), SpecError> {
        if self.width_px == 0 || self.height_px == 0 || self.width_px > 20_000 || self.height_px > 20_000 {
            return Err(SpecError::invalid(
                what,
                format!("{field}.width_px/height_px"),
                "must be between 1 and 20000 pixels",
            ));
        }
        check_range(what, &format!("{field}.fx_px"), self.fx_px, 1.0, 1e6)?;
        check_range(what, &format!("{field}.fy_px"), self.fy_px, 1.0, 1e6)?;
        check_range(what, &format!("{field}.cx_px"), self.cx_px, 0.0, self.width_px as f64)?;
        check_range(what, &format!("{field}.cy_px"), self.cy_px, 0.0, self.height_px as f64)?;
        for (i, k) in self.distortion.iter().enumerate() {
            check_range(what, &format!("{field}.distortion[{i}]"), *k, -10.0, 10.0)?;
        }
        Ok(())
    }

    /// Applies distortion to normalised image coordinates (x/z, y/z).
    pub fn distort_normalized(&self, x: f64, y: f64) -> (f64, f64) {
        let [k1, k2, p1, p2, k3] = self.distortion;
        let r2 = x * x + y * y;
        let radial = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2;
        let xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x);
        let yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y;
        (xd, yd)
    }

    /// Inverts [`Self::distort_normalized`] by fixed-point iteration (as cv::undistortPoints).
    pub fn undistort_normalized(&self, xd: f64, yd: f64) -> (f64, f64) {
        let [k1, k2, p1, p2, k3] = self.distortion;
        let (mut x, mut y) = (xd, yd);
        for _ in 0..20 {
            let r2 = x * x + y * y;
            let radial = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2;
            let dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x);
            let dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y;
            x = (xd - dx) / radial;
            y = (yd - dy) / radial;
        }
        (x, y)
    }

    /// Projects a point in the camera frame to pixels; `None` behind the camera.
    pub fn project(&self, p_camera: &Point3<f64>) -> Option<Point2<f64>> {
        if p_camera.z <= 1e-9 {
            return None;
        }
        let (xd, yd) = self.distort_normalized(p_camera.x / p_camera.z, p_camera.y / p_camera.z);
        Some(Point2::new(self.fx_px * xd + self.cx_px, self.fy_px * yd + self.cy_px))
    }

    /// Unit ray direction in the camera frame through a (distorted) pixel position.
    pub fn ray(&self, pixel: &Point2<f64>) -> Vector3<f64> {
        let xd = (pixel.x - self.cx_px) / self.fx_px;
        let yd = (pixel.y - self.cy_px) / self.fy_px;
        let (x, y) = self.undistort_normalized(xd, yd);
        Vector3::new(x, y, 1.0).normalize()
    }

    pub fn contains(&self, pixel: &Point2<f64>) -> bool {
        pixel.x >= 0.0 && pixel.y >= 0.0 && pixel.x < self.width_px as f64 && pixel.y < self.height_px as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    fn cam() -> CameraIntrinsics {
        CameraIntrinsics {
            width_px: 800,
            height_px: 600,
            fx_px: 2000.0,
            fy_px: 2000.0,
            cx_px: 400.0,
            cy_px: 300.0,
            distortion: [-0.08, 0.02, 0.0005, -0.0003, 0.0],
        }
    }

    proptest! {
        #[test]
        fn ray_inverts_projection(x in -0.18f64..0.18, y in -0.14f64..0.14, z in 20.0f64..200.0) {
            let c = cam();
            let p = Point3::new(x * z, y * z, z);
            let px = c.project(&p).expect("in front");
            let r = c.ray(&px);
            let expected = p.coords.normalize();
            prop_assert!((r - expected).norm() < 1e-9, "ray {r:?} vs {expected:?}");
        }
    }

    #[test]
    fn principal_point_projects_to_centre() {
        let c = cam();
        let px = c.project(&Point3::new(0.0, 0.0, 50.0)).expect("in front");
        assert_relative_eq!(px.x, 400.0);
        assert_relative_eq!(px.y, 300.0);
        assert!(c.project(&Point3::new(0.0, 0.0, -1.0)).is_none());
    }
}
