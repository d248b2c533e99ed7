//! The skin under a detection as the tile's depth frame shows it: a quadric fitted to the
//! depth pixels around it, which places an oblique or curved follicle better than the
//! smooth surface polynomial, and decides how far its normal is trusted.

use nalgebra::{Point2, Point3, Vector3};

/// The skin around a pixel as fitted to the depth frame's 3-D points there, camera frame:
/// a quadric height field `w = f(u, v)` over the points' best plane (origin at their mean,
/// axes `e_u`, `e_v` in the plane and `n` its normal towards the camera).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LocalPlane {
    origin: Point3<f64>,
    e_u: Vector3<f64>,
    e_v: Vector3<f64>,
    pub(super) normal: Vector3<f64>,
    /// `f(u, v) = c0 + c1 u + c2 v + c3 u² + c4 uv + c5 v²`, mm.
    coef: [f64; 6],
}

impl LocalPlane {
    fn height(&self, u: f64, v: f64) -> f64 {
        let c = &self.coef;
        c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v
    }

    /// Where the ray through `pixel` meets the fitted skin, and the skin's unit normal there
    /// (towards the camera): the skin point under a detection and the skin's own orientation
    /// there, which at a steep fringe the smooth polynomial surface only approximates (there
    /// it sat 0.1-0.15 mm below the skin, and its normals were 0.3° off, on random patient
    /// 1011). The curvature terms keep the normal that of the point itself rather than the
    /// mean over a window that perspective makes lopsided.
    pub(super) fn point_and_normal(
        &self,
        intr: &smp_core::camera::CameraIntrinsics,
        pixel: [f64; 2],
    ) -> Option<LocalSkin> {
        let r = intr.ray(&Point2::new(pixel[0], pixel[1]));
        let (ru, rv, rn) = (r.dot(&self.e_u), r.dot(&self.e_v), r.dot(&self.normal));
        // A ray grazing the skin (beyond ~85°) gives no usable point.
        if rn.abs() < 0.08 {
            return None;
        }
        let o = -self.origin.coords;
        let (ou, ov, on) = (o.dot(&self.e_u), o.dot(&self.e_v), o.dot(&self.normal));
        // Ray point at t in the local frame: (ou + t ru, ov + t rv, on + t rn); solve
        // on + t rn = f(ou + t ru, ov + t rv) by Newton from the plane's intersection.
        let mut t = (self.coef[0] - on) / rn;
        for _ in 0..6 {
            let (u, v) = (ou + t * ru, ov + t * rv);
            let c = &self.coef;
            let (fu, fv) = (c[1] + 2.0 * c[3] * u + c[4] * v, c[2] + c[4] * u + 2.0 * c[5] * v);
            let g = on + t * rn - self.height(u, v);
            let dg = rn - fu * ru - fv * rv;
            if dg.abs() < 1e-9 {
                return None;
            }
            let step = g / dg;
            t -= step;
            if step.abs() < 1e-7 {
                break;
            }
        }
        let (u, v) = (ou + t * ru, ov + t * rv);
        let c = &self.coef;
        let (fu, fv) = (c[1] + 2.0 * c[3] * u + c[4] * v, c[2] + c[4] * u + 2.0 * c[5] * v);
        let n = (self.normal - self.e_u * fu - self.e_v * fv).try_normalize(1e-12)?;
        let p = r * t;
        // The Newton step must stay on the fitted window, not run off along the quadric.
        let near = (p - self.origin.coords).norm() < 10.0;
        (t > 0.0 && near && p.iter().chain(n.iter()).all(|x| x.is_finite()))
            .then_some(LocalSkin { point: Point3::from(p), normal: n })
    }
}

/// The skin under a detection from the depth frame, camera frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LocalSkin {
    pub(super) point: Point3<f64>,
    /// Unit normal, towards the camera.
    pub(super) normal: Vector3<f64>,
}

impl LocalSkin {
    /// Weight of this normal against the fitted surface's, from the angle between the normal
    /// and the line of sight: 0 up to [`LOCAL_NORMAL_FROM_DEG`], 1 from
    /// [`LOCAL_NORMAL_FULL_DEG`], linear between.
    pub(super) fn normal_weight(&self) -> f64 {
        let to_camera = -self.point.coords;
        let cos = self.normal.dot(&to_camera) / to_camera.norm().max(1e-12);
        let deg = cos.clamp(-1.0, 1.0).acos().to_degrees();
        ((deg - LOCAL_NORMAL_FROM_DEG) / (LOCAL_NORMAL_FULL_DEG - LOCAL_NORMAL_FROM_DEG)).clamp(0.0, 1.0)
    }
}

/// A follicle's normal is the fitted surface's where its tile sees the skin within this angle
/// of the line of sight, the depth frame's local fit's beyond [`LOCAL_NORMAL_FULL_DEG`], and
/// a blend between. Measured on random patients 1006, 1009 and 1011 (RMS error against the
/// truth by viewing angle): the local fit's error falls from 0.5° face-on to 0.16° at 60-70°
/// (the skin's slope spans more depth across the window there), the surface's rises from
/// 0.12° to 0.4° at 60-70° (the fringe is the edge of its polynomial's domain); they cross
/// at 50-60°.
const LOCAL_NORMAL_FROM_DEG: f64 = 45.0;
const LOCAL_NORMAL_FULL_DEG: f64 = 65.0;

/// The depth frame's skin around a sub-pixel position as a plane: the valid depth pixels of
/// a square window lifted to 3-D (rays from a first-order model of the lens around the
/// pixel) and fitted by total least squares. Fitting in 3-D rather than depth against pixel
/// keeps an oblique plane exact (its depth is not linear in the pixel), averages the
/// structured-light noise and bridges holes (a dark follicle may return no depth on a real
/// sensor). `None` when fewer than a third of the window's pixels are valid.
pub(super) fn local_skin_fit(
    intr: &smp_core::camera::CameraIntrinsics,
    depth: &smp_core::image::DepthImage,
    pixel: [f64; 2],
    half_px: i32,
) -> Option<LocalPlane> {
    let (w, h) = (depth.width as i64, depth.height as i64);
    let (cx, cy) = (pixel[0].round() as i64, pixel[1].round() as i64);
    let half = half_px.max(1) as i64;
    // Normalised ray (z = 1) at the window's centre pixel and its change per pixel.
    let ray1 = |u: f64, v: f64| {
        let r = intr.ray(&Point2::new(u, v));
        r / r.z
    };
    let (c0x, c0y) = (cx as f64, cy as f64);
    let r0 = ray1(c0x, c0y);
    let ju = ray1(c0x + 1.0, c0y) - r0;
    let jv = ray1(c0x, c0y + 1.0) - r0;
    let mut sum = Vector3::<f64>::zeros();
    let mut pts: Vec<Vector3<f64>> = Vec::with_capacity(((2 * half + 1) * (2 * half + 1)) as usize);
    for y in (cy - half).max(0)..=(cy + half).min(h - 1) {
        for x in (cx - half).max(0)..=(cx + half).min(w - 1) {
            let z = depth.z_mm[(y * w + x) as usize] as f64;
            if !(z.is_finite() && z > 0.0) {
                continue;
            }
            let p = (r0 + ju * (x - cx) as f64 + jv * (y - cy) as f64) * z;
            sum += p;
            pts.push(p);
        }
    }
    let side = (2 * half + 1) as usize;
    if pts.len() * 3 < side * side {
        return None;
    }
    let mean = sum / pts.len() as f64;
    let mut cov = nalgebra::Matrix3::<f64>::zeros();
    for p in &pts {
        let d = p - mean;
        cov += d * d.transpose();
    }
    let eig = cov.symmetric_eigen();
    let k = eig.eigenvalues.imin();
    let mut n: Vector3<f64> = eig.eigenvectors.column(k).into_owned();
    // A degenerate window (a line of valid pixels) has two small eigenvalues.
    let mut ev: Vec<f64> = eig.eigenvalues.iter().copied().collect();
    ev.sort_by(f64::total_cmp);
    if !(ev[1] > 4.0 * ev[0].max(0.0) && ev[1] > 0.0) {
        return None;
    }
    if n.dot(&mean) > 0.0 {
        n = -n;
    }
    let n = n.try_normalize(1e-12)?;
    let e_u = n.cross(&Vector3::x()).try_normalize(1e-6).or_else(|| n.cross(&Vector3::y()).try_normalize(1e-6))?;
    let e_v = n.cross(&e_u);
    // Quadric height over the plane, least squares.
    let mut ata = nalgebra::Matrix6::<f64>::zeros();
    let mut atb = nalgebra::Vector6::<f64>::zeros();
    for p in &pts {
        let d = p - mean;
        let (u, v, wn) = (d.dot(&e_u), d.dot(&e_v), d.dot(&n));
        let row = nalgebra::Vector6::new(1.0, u, v, u * u, u * v, v * v);
        ata += row * row.transpose();
        atb += row * wn;
    }
    let c = ata.cholesky()?.solve(&atb);
    let coef = [c[0], c[1], c[2], c[3], c[4], c[5]];
    coef.iter().chain(mean.iter()).all(|v| v.is_finite()).then_some(LocalPlane {
        origin: Point3::from(mean),
        e_u,
        e_v,
        normal: n,
        coef,
    })
}
