//! Rerun logging of every stage of a session to an `.rrd` file, for QA to replay in the viewer.
//!
//! This crate is the only one that talks to rerun. Invariant: logging never slows or blocks
//! the caller. Every `log_*` call copies what it needs into a message and `try_send`s it on a
//! bounded channel (capacity [`VizConfig::channel_capacity`], plus a byte budget
//! [`VizConfig::max_bytes_in_flight`] because one camera frame weighs megabytes); one
//! background thread owns the [`rerun::RecordingStream`] and does every rerun call. When the
//! channel or the budget is full the message is dropped and counted ([`VizStats::dropped`]),
//! never waited on: the streaming pump calls [`Recorder::log_dot_state`] thousands of times.
//! [`Recorder::finish`] closes the channel, lets the thread drain it, flushes the file (rerun
//! writes its footer when the stream is dropped) and reports the counts.
//!
//! # What QA sees (entity paths)
//!
//! The 3-D root `/` is the **head frame** (+x nose, +y patient's left, +z vertex; millimetres),
//! declared right-handed Z-up with `ViewCoordinates`, with 30 mm axes drawn at the origin.
//! Everything below is static (visible on every timeline) unless it says `session_time`.
//!
//! | entity | archetypes | content |
//! | --- | --- | --- |
//! | `scan` | `Transform3D`, `TransformAxes3D` | the **base frame** of the arm: `head_from_base` (the inverse of the `base_from_head` given in [`VizConfig`] or [`Recorder::set_base_from_head`]), 50 mm axes. Cameras and the outline are logged in base coordinates below it, so they land in the head frame. |
//! | `scan/overview` | `Transform3D` + `Pinhole` + `Image` | the overview photo, posed by `base_from_camera` (a `CameraView` whose label starts with `overview`) |
//! | `scan/tiles/<label>` | `Transform3D` + `Pinhole` + `Image` | one flange-camera tile per `CameraView` (label sanitised to `[A-Za-z0-9_-]`), downsampled to [`VizConfig::tile_max_side_px`] |
//! | `scan/outline` | `Points3D` | scalp outline points found in the overview (base frame) |
//! | `map/follicles` | `Points3D` | detected follicles (head frame), radius = diameter / 2; natural dark brown, earlier SMP dots blue |
//! | `map/surface` | `Mesh3D` | the fitted surface patch over non-`Outside` region cells; colour = region (hair brown, thinning tan, bald skin, scar pink) |
//! | `plan` | `AnnotationContext` | class ids of zones: 1 hairline, 2 frontal, 3 mid_scalp, 4 crown, 5 temple, 6 scar |
//! | `plan/dots` | `Points3D` | planned dots, radius 0.2 mm, class id (label + colour) by zone |
//! | `plan/toolpath` | `LineStrips3D` | the needle-tip path in the head frame |
//! | `session` | `AnnotationContext` | class ids of dot states: 1 planned, 2 sent, 3 accepted, 4 executed (green), 5 verified, 6 uncertain (red), 7 skipped |
//! | `session/dots` | `Points3D` on `session_time` | every dot that left `planned`, coloured by its latest state; cumulative snapshots, so executed dots appear progressively as the time cursor moves |
//! | `session/last_dot` | `Points3D` on `session_time` | the dot of the latest state change, labelled `dot <id> <state>` |
//! | `session/entries` | `Points3D` on `session_time` | needle entries (where the tip crossed the skin), cumulative snapshots at the entries' own `time_s` |
//! | `session/entry_depth_mm` | `Scalars` on `session_time` | depth of each entry below the skin, for checking the depth limit |
//! | `mockup` (any path given to [`Recorder::log_image`]) | `Image` | 2-D images such as the consultation mock-up |
//!
//! `session_time` is a duration timeline in seconds; [`Recorder::log_dot_state`] and
//! [`Recorder::log_entries`] both place data at the time they are given, so the caller
//! should give them the same origin (e.g. the controller's clock).

mod convert;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use nalgebra::Isometry3;
use smp_core::image::{CameraView, RgbImage};
use smp_core::map::ScalpMap;
use smp_core::plan::{DotState, SessionPlan};
use smp_core::NeedleEntry;
use thiserror::Error;

/// Rerun application id of every recording this crate writes.
pub const APPLICATION_ID: &str = "smp";

/// Name of the timeline session events are placed on (a duration, seconds).
pub const SESSION_TIMELINE: &str = "session_time";

/// How a [`Recorder`] buffers and how much it keeps of large data.
#[derive(Debug, Clone, PartialEq)]
pub struct VizConfig {
    /// Messages the channel holds before new ones are dropped.
    pub channel_capacity: usize,
    /// Bytes of queued payload (images, point lists) before new messages are dropped, so a
    /// stalled disk cannot make the queue grow to gigabytes of camera frames. A single
    /// message larger than this is still accepted when the queue is empty.
    pub max_bytes_in_flight: usize,
    /// Longest side of the overview and of images given to [`Recorder::log_image`], pixels,
    /// reached by integer box downsampling; 0 keeps full resolution.
    pub image_max_side_px: u32,
    /// Longest side of flange-camera tiles, pixels; 0 keeps full resolution.
    pub tile_max_side_px: u32,
    /// Upper bound on the quads of `map/surface` (region cells are merged to stay under it).
    pub mesh_max_quads: usize,
    /// Fewest changes between two snapshots of `session/dots` and `session/entries`.
    pub snapshot_min_step: usize,
    /// Registration placing the head in the arm base frame (`scan` is logged with its inverse).
    pub base_from_head: Isometry3<f64>,
}

impl Default for VizConfig {
    fn default() -> Self {
        VizConfig {
            channel_capacity: 1024,
            max_bytes_in_flight: 256 * 1024 * 1024,
            image_max_side_px: 1280,
            tile_max_side_px: 400,
            mesh_max_quads: 20_000,
            snapshot_min_step: 64,
            base_from_head: Isometry3::identity(),
        }
    }
}

/// What became of the messages handed to a [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VizStats {
    /// Messages written to the recording.
    pub logged: u64,
    /// Messages dropped because the channel or the byte budget was full (or the thread gone).
    pub dropped: u64,
    /// Messages rerun refused to log ([`Recorder::finish`] then fails with [`VizError::Logging`]).
    pub failed: u64,
    /// Size of the `.rrd` file after [`Recorder::finish`]; 0 in a live [`Recorder::stats`].
    pub file_bytes: u64,
}

/// Why a recording could not be started or finished.
#[derive(Debug, Error)]
pub enum VizError {
    #[error("cannot create rerun recording {path}: {message}; check that the directory exists and is writable")]
    Create { path: PathBuf, message: String },
    #[error("invalid viz config: {0}")]
    Config(String),
    #[error("cannot start the viz thread: {0}; the system is out of threads or memory")]
    Spawn(#[source] std::io::Error),
    #[error("the viz thread panicked; the recording {path} is probably truncated")]
    WorkerPanicked { path: PathBuf },
    #[error("cannot flush rerun recording {path}: {message}; check free disk space")]
    Flush { path: PathBuf, message: String },
    #[error("rerun refused {failed} log calls writing {path}, first: {first}; this is a bug in smp-viz")]
    Logging { path: PathBuf, failed: u64, first: String },
}

/// Messages to the worker thread: owned copies of what the caller logged.
pub(crate) enum Msg {
    SetBaseFromHead(Isometry3<f64>),
    Camera(Box<CameraMsg>),
    Outline(Vec<[f32; 3]>),
    Map(Box<ScalpMap>),
    Plan(Vec<([f32; 3], u16)>),
    Toolpath(Vec<[f32; 3]>),
    DotState { time_s: f64, dot_id: u32, state: DotState, p_head: [f32; 3] },
    Entries(Vec<NeedleEntry>),
    Image { path: String, image: RgbImage },
}

pub(crate) struct CameraMsg {
    pub label: String,
    pub intrinsics: smp_core::camera::CameraIntrinsics,
    pub base_from_camera: Isometry3<f64>,
    pub image: RgbImage,
    /// Where to draw the image plane: the median depth when the view has a depth frame.
    pub plane_distance_mm: Option<f32>,
}

impl Msg {
    /// Approximate heap payload, for the byte budget.
    fn payload_bytes(&self) -> usize {
        const P: usize = std::mem::size_of::<[f32; 3]>();
        match self {
            Msg::SetBaseFromHead(_) | Msg::DotState { .. } => 0,
            Msg::Camera(c) => c.image.data.len(),
            Msg::Outline(p) | Msg::Toolpath(p) => p.len() * P,
            Msg::Map(m) => {
                m.follicles.len() * std::mem::size_of::<smp_core::map::Follicle>()
                    + m.regions.rows.iter().map(String::len).sum::<usize>()
            }
            Msg::Plan(d) => d.len() * std::mem::size_of::<([f32; 3], u16)>(),
            Msg::Entries(e) => e.len() * std::mem::size_of::<NeedleEntry>(),
            Msg::Image { image, .. } => image.data.len(),
        }
    }
}

pub(crate) struct Envelope {
    pub bytes: usize,
    pub msg: Msg,
}

/// Counters shared between the caller's side and the worker thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub logged: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_in_flight: AtomicUsize,
}

/// A rerun recording to an `.rrd` file, fed through a bounded channel (see the crate doc).
///
/// `Send + Sync`: share it by reference between the stages that log. Dropping it without
/// [`Recorder::finish`] still drains and closes the file, but loses the report.
pub struct Recorder {
    tx: Option<SyncSender<Envelope>>,
    worker: Option<JoinHandle<worker::WorkerReport>>,
    shared: Arc<Shared>,
    path: PathBuf,
    max_bytes_in_flight: usize,
}

impl Recorder {
    /// Starts a recording saved to `path` with [`VizConfig::default`] (base frame == head
    /// frame until [`Recorder::set_base_from_head`] is called).
    pub fn to_file(path: &Path) -> Result<Self, VizError> {
        Self::to_file_with(path, VizConfig::default())
    }

    /// Starts a recording saved to `path` (created or truncated now, so a bad path fails here).
    pub fn to_file_with(path: &Path, config: VizConfig) -> Result<Self, VizError> {
        Self::start(path, config, None)
    }

    fn start(path: &Path, config: VizConfig, gate: Option<Receiver<()>>) -> Result<Self, VizError> {
        if config.channel_capacity == 0 {
            return Err(VizError::Config("channel_capacity is 0; use at least 1 (1024 is the default)".into()));
        }
        if config.max_bytes_in_flight == 0 {
            return Err(VizError::Config("max_bytes_in_flight is 0; use e.g. 256 MiB".into()));
        }
        let rec = rerun::RecordingStreamBuilder::new(APPLICATION_ID)
            .save(path)
            .map_err(|e| VizError::Create { path: path.to_owned(), message: e.to_string() })?;
        let (tx, rx) = mpsc::sync_channel::<Envelope>(config.channel_capacity);
        let shared = Arc::new(Shared::default());
        let max_bytes_in_flight = config.max_bytes_in_flight;
        let worker = worker::Worker::new(rec, config, Arc::clone(&shared));
        let handle = std::thread::Builder::new()
            .name("smp-viz".into())
            .spawn(move || worker.run(rx, gate))
            .map_err(VizError::Spawn)?;
        Ok(Recorder { tx: Some(tx), worker: Some(handle), shared, path: path.to_owned(), max_bytes_in_flight })
    }

    /// Test hook: the worker logs nothing until the returned sender is used or dropped.
    #[cfg(test)]
    fn to_file_gated(path: &Path, config: VizConfig) -> Result<(Self, SyncSender<()>), VizError> {
        let (gate_tx, gate_rx) = mpsc::sync_channel(1);
        Ok((Self::start(path, config, Some(gate_rx))?, gate_tx))
    }

    /// Path of the `.rrd` file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts so far (messages still queued are neither logged nor dropped yet).
    pub fn stats(&self) -> VizStats {
        VizStats {
            logged: self.shared.logged.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            file_bytes: 0,
        }
    }

    /// Never blocks: enqueues or drops-and-counts.
    fn send(&self, msg: Msg) {
        let bytes = msg.payload_bytes();
        let before = self.shared.bytes_in_flight.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > self.max_bytes_in_flight {
            self.shared.bytes_in_flight.fetch_sub(bytes, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = match &self.tx {
            Some(tx) => match tx.try_send(Envelope { bytes, msg }) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.shared.bytes_in_flight.fetch_sub(bytes, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Re-places the `scan` subtree (cameras, outline) for a new registration; the last value
    /// wins for the whole recording (it is static).
    pub fn set_base_from_head(&self, base_from_head: &Isometry3<f64>) {
        self.send(Msg::SetBaseFromHead(*base_from_head));
    }

    /// Logs each view (one message per view) as posed image + pinhole under `scan/overview`
    /// or `scan/tiles/<label>`.
    pub fn log_camera_views(&self, views: &[CameraView]) {
        for v in views {
            let plane_distance_mm = v.depth.as_ref().and_then(convert::median_depth_mm);
            self.send(Msg::Camera(Box::new(CameraMsg {
                label: v.label.clone(),
                intrinsics: v.intrinsics,
                base_from_camera: v.base_from_camera,
                image: v.image.clone(),
                plane_distance_mm,
            })));
        }
    }

    /// Logs the scalp outline found in the overview, in the base frame, as `scan/outline`.
    pub fn log_scalp_outline(&self, points_base: &[[f64; 3]]) {
        self.send(Msg::Outline(points_base.iter().map(|p| convert::f32x3(*p)).collect()));
    }

    /// Logs `map/follicles` and `map/surface`.
    pub fn log_map(&self, map: &ScalpMap) {
        self.send(Msg::Map(Box::new(map.clone())));
    }

    /// Logs `plan/dots` (class id by zone).
    pub fn log_plan(&self, plan: &SessionPlan) {
        let dots = plan.dots.iter().map(|d| (convert::f32x3(d.position()), convert::zone_class(d.zone))).collect();
        self.send(Msg::Plan(dots));
    }

    /// Logs the needle-tip path, head frame, as `plan/toolpath`.
    pub fn log_toolpath(&self, points_head: &[[f64; 3]]) {
        self.send(Msg::Toolpath(points_head.iter().map(|p| convert::f32x3(*p)).collect()));
    }

    /// Logs a dot's state change at `time_s` on `session_time` (hot path: no allocation).
    pub fn log_dot_state(&self, time_s: f64, dot_id: u32, state: DotState, p_head: [f64; 3]) {
        self.send(Msg::DotState { time_s, dot_id, state, p_head: convert::f32x3(p_head) });
    }

    /// Logs needle entries at their own `time_s` on `session_time`.
    pub fn log_entries(&self, entries: &[NeedleEntry]) {
        if !entries.is_empty() {
            self.send(Msg::Entries(entries.to_vec()));
        }
    }

    /// Logs a 2-D image (e.g. the mock-up) at entity `path` (rerun entity-path syntax).
    pub fn log_image(&self, path: &str, img: &RgbImage) {
        self.send(Msg::Image { path: path.to_owned(), image: img.clone() });
    }

    /// Closes the channel, waits for the thread to log what is queued, flushes and closes the
    /// file, and reports. Fails if the file could not be flushed or rerun refused a message.
    pub fn finish(mut self) -> Result<VizStats, VizError> {
        let report = self.close()?;
        let mut stats = self.stats();
        stats.file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if let Some(message) = report.flush_error {
            return Err(VizError::Flush { path: self.path.clone(), message });
        }
        if let Some(first) = report.first_error {
            return Err(VizError::Logging { path: self.path.clone(), failed: stats.failed, first });
        }
        Ok(stats)
    }

    fn close(&mut self) -> Result<worker::WorkerReport, VizError> {
        drop(self.tx.take());
        match self.worker.take() {
            Some(handle) => handle.join().map_err(|_| VizError::WorkerPanicked { path: self.path.clone() }),
            None => Ok(worker::WorkerReport::default()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Closing the channel and joining writes the file's footer; errors have nowhere to go.
        let _ = self.close();
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("path", &self.path).field("stats", &self.stats()).finish()
    }
}

#[cfg(test)]
mod tests;
