//! The unit ray of every pixel of a camera model, computed once (undistortion is the costliest
//! step of a render) and shared by every view of that camera.

use std::sync::{Arc, Mutex, OnceLock};

use nalgebra::{Point2, Vector3};
use smp_core::camera::CameraIntrinsics;

/// The unit ray (camera frame) of every pixel of one camera model, row-major.
#[derive(Debug)]
pub(crate) struct RayTable {
    intrinsics: CameraIntrinsics,
    pub(crate) rays: Vec<[f32; 3]>,
}

/// Rays for `intrinsics`, computed with [`CameraIntrinsics::ray`] (which undistorts each
/// pixel by fixed-point iteration, the costliest step of a render) once per camera model
/// and shared by every tile of that camera. f32 is ample: 1e-7 rad is 0.03 µm at 300 mm.
pub(crate) fn ray_table(intrinsics: &CameraIntrinsics) -> Arc<RayTable> {
    static CACHE: OnceLock<Mutex<Vec<Arc<RayTable>>>> = OnceLock::new();
    const KEEP: usize = 4;
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    if let Ok(tables) = cache.lock() {
        if let Some(t) = tables.iter().find(|t| t.intrinsics == *intrinsics) {
            return Arc::clone(t);
        }
    }
    // Built outside the lock: two threads may both build the first table, which is harmless.
    let (w, h) = (intrinsics.width_px as usize, intrinsics.height_px as usize);
    let mut rays = Vec::with_capacity(w * h);
    // Without distortion the undistortion is the identity (bit for bit): skip its iterations.
    let pinhole = intrinsics.distortion.iter().all(|k| *k == 0.0);
    for y in 0..h {
        for x in 0..w {
            let r = if pinhole {
                let xn = (x as f64 - intrinsics.cx_px) / intrinsics.fx_px;
                let yn = (y as f64 - intrinsics.cy_px) / intrinsics.fy_px;
                Vector3::new(xn, yn, 1.0).normalize()
            } else {
                intrinsics.ray(&Point2::new(x as f64, y as f64))
            };
            rays.push([r.x as f32, r.y as f32, r.z as f32]);
        }
    }
    let table = Arc::new(RayTable { intrinsics: *intrinsics, rays });
    if let Ok(mut tables) = cache.lock() {
        if tables.len() >= KEEP {
            tables.remove(0);
        }
        tables.push(Arc::clone(&table));
    }
    table
}

#[cfg(test)]
mod tests {
    use nalgebra::Point3;
    use smp_core::rig::Rig;

    use super::*;

    #[test]
    fn ray_table_matches_the_core_camera_model() {
        let rig = Rig::default_sim();
        for intr in [rig.flange_camera.intrinsics, rig.overview_camera.intrinsics] {
            let table = ray_table(&intr);
            let (w, h) = (intr.width_px as usize, intr.height_px as usize);
            assert_eq!(table.rays.len(), w * h);
            for (x, y) in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w / 2, h / 2), (123, 77)] {
                let r = intr.ray(&Point2::new(x as f64, y as f64));
                let q = table.rays[y * w + x];
                let err = (r - Vector3::new(f64::from(q[0]), f64::from(q[1]), f64::from(q[2]))).norm();
                assert!(err < 1e-6, "pixel {x},{y}: {err}");
            }
            assert!(Arc::ptr_eq(&table, &ray_table(&intr)), "cached");
        }
    }

    #[test]
    fn rendered_rays_follow_the_intrinsics_projection() {
        // Every pixel's ray, projected back through CameraIntrinsics::project (distortion
        // included), lands on that pixel: the render samples the world exactly where the
        // camera model says each pixel looks.
        let rig = Rig::default_sim();
        let mut strong = rig.flange_camera.intrinsics;
        strong.distortion = [-0.3, 0.15, 0.002, -0.001, -0.02];
        for intr in [rig.flange_camera.intrinsics, strong] {
            let table = ray_table(&intr);
            let w = intr.width_px as usize;
            let mut worst: f64 = 0.0;
            for (i, r) in table.rays.iter().enumerate().step_by(37) {
                let p = Point3::new(f64::from(r[0]), f64::from(r[1]), f64::from(r[2])) * 80.0;
                let px = intr.project(&p).expect("in front");
                worst = worst.max((px.x - (i % w) as f64).abs().max((px.y - (i / w) as f64).abs()));
            }
            assert!(worst < 0.05, "{:?}: worst {worst} px", intr.distortion);
        }
    }
}
