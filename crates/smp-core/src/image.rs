//! Plain image buffers shared between the simulator, vision, viz and the CLI.
//!
//! Kept free of OpenCV so that pure crates can produce and consume pictures; the vision
//! crate wraps them in `Mat`s without copying where it can.

use crate::camera::CameraIntrinsics;
use nalgebra::Isometry3;

/// 8-bit single-channel image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// 8-bit RGB image, row-major, interleaved `r g b`.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Depth along the camera's optical axis in millimetres; `NaN` where there is no return.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthImage {
    pub width: u32,
    pub height: u32,
    pub z_mm: Vec<f32>,
}

impl GrayImage {
    pub fn new(width: u32, height: u32, fill: u8) -> Self {
        GrayImage { width, height, data: vec![fill; width as usize * height as usize] }
    }
    pub fn get(&self, x: u32, y: u32) -> u8 {
        self.data[y as usize * self.width as usize + x as usize]
    }
}

impl RgbImage {
    pub fn new(width: u32, height: u32, fill: [u8; 3]) -> Self {
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for _ in 0..(width as usize * height as usize) {
            data.extend_from_slice(&fill);
        }
        RgbImage { width, height, data }
    }

    pub fn get(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    pub fn put(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data[i..i + 3].copy_from_slice(&rgb);
    }

    /// Luma (BT.601) as a grey image.
    pub fn to_gray(&self) -> GrayImage {
        let data = self
            .data
            .chunks_exact(3)
            .map(|p| (0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64).round().clamp(0.0, 255.0) as u8)
            .collect();
        GrayImage { width: self.width, height: self.height, data }
    }
}

/// One camera exposure with the pose it was taken from, as vision receives it.
#[derive(Debug, Clone)]
pub struct CameraView {
    /// Which camera took it (e.g. `flange`, `overview`) and the view index, for messages.
    pub label: String,
    pub intrinsics: CameraIntrinsics,
    /// Pose of the camera when the frame was taken, from the arm's kinematics and calibration.
    pub base_from_camera: Isometry3<f64>,
    pub image: RgbImage,
    /// Depth-mode frame (structured light), when the camera has one.
    pub depth: Option<DepthImage>,
}
