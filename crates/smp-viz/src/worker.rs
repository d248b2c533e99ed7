//! The background thread: the only code that calls rerun.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use nalgebra::Isometry3;
use rerun::{RecordingStream, RecordingStreamResult};
use smp_core::map::ScalpMap;
use smp_core::plan::DotState;
use smp_core::NeedleEntry;

use crate::convert::{self, DotBoard, SnapshotPacer};
use crate::{CameraMsg, Envelope, Msg, Shared, VizConfig, SESSION_TIMELINE};

const PLAN_DOT_RADIUS_MM: f32 = 0.2;
const SESSION_DOT_RADIUS_MM: f32 = 0.25;
const ENTRY_RADIUS_MM: f32 = 0.15;
const OUTLINE_RADIUS_MM: f32 = 0.5;
const TOOLPATH_RADIUS_MM: f32 = 0.05;
const MIN_FOLLICLE_RADIUS_MM: f32 = 0.05;
/// Image-plane distance when a view has no depth frame.
const DEFAULT_PLANE_MM: f32 = 100.0;

/// What the thread hands back when the channel closes.
#[derive(Debug, Default)]
pub(crate) struct WorkerReport {
    pub flush_error: Option<String>,
    pub first_error: Option<String>,
}

pub(crate) struct Worker {
    rec: RecordingStream,
    config: VizConfig,
    shared: Arc<Shared>,
    dots: DotBoard,
    dot_pacer: SnapshotPacer,
    last_dot_time_s: f64,
    entries: Vec<[f32; 3]>,
    entry_pacer: SnapshotPacer,
    last_entry_time_s: f64,
    first_error: Option<String>,
}

impl Worker {
    pub(crate) fn new(rec: RecordingStream, config: VizConfig, shared: Arc<Shared>) -> Self {
        let min_step = config.snapshot_min_step;
        Worker {
            rec,
            config,
            shared,
            dots: DotBoard::default(),
            dot_pacer: SnapshotPacer::new(min_step),
            last_dot_time_s: 0.0,
            entries: Vec::new(),
            entry_pacer: SnapshotPacer::new(min_step),
            last_entry_time_s: 0.0,
            first_error: None,
        }
    }

    /// Logs the static scaffolding, then every message until the channel closes, then the
    /// pending snapshots; flushes and drops the stream (which writes the file footer).
    pub(crate) fn run(mut self, rx: Receiver<Envelope>, gate: Option<Receiver<()>>) -> WorkerReport {
        let setup = self.log_setup();
        self.note(setup);
        if let Some(gate) = gate {
            // Test hook: hold the consumer so the channel can be saturated deterministically.
            let _ = gate.recv();
        }
        for Envelope { bytes, msg } in rx {
            let result = self.handle(msg);
            self.shared.bytes_in_flight.fetch_sub(bytes, Ordering::AcqRel);
            match result {
                Ok(()) => {
                    self.shared.logged.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    self.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        let tail = self.flush_snapshots();
        self.note(tail);
        let flush_error = self.rec.flush_blocking().err().map(|e| e.to_string());
        let Worker { rec, first_error, .. } = self;
        drop(rec);
        WorkerReport { flush_error, first_error }
    }

    /// Records an error of a log call that is not one of the caller's messages.
    fn note(&mut self, result: RecordingStreamResult<()>) {
        if let Err(e) = result {
            self.first_error.get_or_insert_with(|| e.to_string());
        }
    }

    fn log_setup(&self) -> RecordingStreamResult<()> {
        let rec = &self.rec;
        rec.log_static(
            "/",
            &[
                &rerun::ViewCoordinates::RIGHT_HAND_Z_UP() as &dyn rerun::AsComponents,
                &rerun::TransformAxes3D::new(30.0),
            ],
        )?;
        rec.log_static("scan", &rerun::TransformAxes3D::new(50.0))?;
        self.log_base_from_head(&self.config.base_from_head)?;
        rec.log_static(
            "plan",
            &rerun::AnnotationContext::new(convert::ZONES.iter().map(|z| {
                let [r, g, b] = convert::zone_rgb(*z);
                (convert::zone_class(*z), convert::zone_name(*z), rerun::Rgba32::from_rgb(r, g, b))
            })),
        )?;
        rec.log_static(
            "session",
            &rerun::AnnotationContext::new(convert::DOT_STATES.iter().map(|s| {
                let [r, g, b] = convert::dot_state_rgb(*s);
                (convert::dot_state_class(*s), s.as_str(), rerun::Rgba32::from_rgb(r, g, b))
            })),
        )?;
        Ok(())
    }

    fn log_base_from_head(&self, base_from_head: &Isometry3<f64>) -> RecordingStreamResult<()> {
        self.rec.log_static("scan", &transform(&base_from_head.inverse()))
    }

    fn handle(&mut self, msg: Msg) -> RecordingStreamResult<()> {
        match msg {
            Msg::SetBaseFromHead(iso) => self.log_base_from_head(&iso),
            Msg::Camera(cam) => self.log_camera(*cam),
            Msg::Outline(points) => self.rec.log_static(
                "scan/outline",
                &rerun::Points3D::new(points)
                    .with_radii([OUTLINE_RADIUS_MM])
                    .with_colors([rerun::Color::from_rgb(0, 220, 255)]),
            ),
            Msg::Map(map) => self.log_map(&map),
            Msg::Plan(dots) => {
                let (positions, classes): (Vec<[f32; 3]>, Vec<u16>) = dots.into_iter().unzip();
                self.rec.log_static(
                    "plan/dots",
                    &rerun::Points3D::new(positions).with_radii([PLAN_DOT_RADIUS_MM]).with_class_ids(classes),
                )
            }
            Msg::Toolpath(points) => self.rec.log_static(
                "plan/toolpath",
                &rerun::LineStrips3D::new([points])
                    .with_radii([TOOLPATH_RADIUS_MM])
                    .with_colors([rerun::Color::from_rgb(120, 160, 200)]),
            ),
            Msg::DotState { time_s, dot_id, state, p_head } => self.log_dot_state(time_s, dot_id, state, p_head),
            Msg::Entries(entries) => self.log_entries(entries),
            Msg::Image { path, image } => {
                let factor = convert::downsample_factor(image.width, image.height, self.config.image_max_side_px);
                let img = convert::downsample(&image, factor);
                self.rec.log_static(path.as_str(), &rerun::Image::from_rgb24(img.data, [img.width, img.height]))
            }
        }
    }

    fn log_camera(&mut self, cam: CameraMsg) -> RecordingStreamResult<()> {
        let is_overview = cam.label.starts_with("overview");
        let (path, max_side) = if is_overview {
            ("scan/overview".to_owned(), self.config.image_max_side_px)
        } else {
            (format!("scan/tiles/{}", convert::sanitize_label(&cam.label)), self.config.tile_max_side_px)
        };
        let factor = convert::downsample_factor(cam.image.width, cam.image.height, max_side);
        let img = convert::downsample(&cam.image, factor);
        let p = convert::pinhole_params(&cam.intrinsics, factor, img.width, img.height);
        let pinhole = rerun::Pinhole::new([
            [p.focal_px[0], 0.0, 0.0],
            [0.0, p.focal_px[1], 0.0],
            [p.principal_px[0], p.principal_px[1], 1.0],
        ])
        .with_resolution(p.resolution_px)
        .with_camera_xyz(rerun::components::ViewCoordinates::RDF)
        .with_image_plane_distance(cam.plane_distance_mm.unwrap_or(DEFAULT_PLANE_MM));
        self.rec.log_static(
            path.as_str(),
            &[
                &transform(&cam.base_from_camera) as &dyn rerun::AsComponents,
                &pinhole,
                &rerun::Image::from_rgb24(img.data, [img.width, img.height]),
            ],
        )
    }

    fn log_map(&mut self, map: &ScalpMap) -> RecordingStreamResult<()> {
        let positions: Vec<[f32; 3]> = map.follicles.iter().map(|f| convert::f32x3(f.position())).collect();
        let radii: Vec<f32> =
            map.follicles.iter().map(|f| ((f.diameter_mm / 2.0) as f32).max(MIN_FOLLICLE_RADIUS_MM)).collect();
        let colors: Vec<rerun::Color> = map
            .follicles
            .iter()
            .map(|f| {
                let [r, g, b] = convert::follicle_rgb(f.kind);
                rerun::Color::from_rgb(r, g, b)
            })
            .collect();
        self.rec.log_static("map/follicles", &rerun::Points3D::new(positions).with_radii(radii).with_colors(colors))?;
        let mesh = convert::surface_mesh(map, self.config.mesh_max_quads);
        let colors: Vec<rerun::Color> =
            mesh.colors.iter().map(|[r, g, b]| rerun::Color::from_rgb(*r, *g, *b)).collect();
        self.rec.log_static(
            "map/surface",
            &rerun::Mesh3D::new(mesh.positions)
                .with_vertex_normals(mesh.normals)
                .with_vertex_colors(colors)
                .with_triangle_indices(mesh.triangles),
        )
    }

    fn log_dot_state(
        &mut self,
        time_s: f64,
        dot_id: u32,
        state: DotState,
        p_head: [f32; 3],
    ) -> RecordingStreamResult<()> {
        let t = convert::clamp_time_s(time_s);
        self.rec.set_duration_secs(SESSION_TIMELINE, t);
        self.rec.log(
            "session/last_dot",
            &rerun::Points3D::new([p_head])
                .with_radii([SESSION_DOT_RADIUS_MM * 1.6])
                .with_class_ids([convert::dot_state_class(state)])
                .with_labels([format!("dot {dot_id} {}", state.as_str())]),
        )?;
        self.dots.update(dot_id, state, p_head);
        self.last_dot_time_s = t;
        if self.dot_pacer.record(self.dots.len()) {
            self.log_dot_snapshot()?;
        }
        Ok(())
    }

    fn log_dot_snapshot(&mut self) -> RecordingStreamResult<()> {
        self.rec.set_duration_secs(SESSION_TIMELINE, self.last_dot_time_s);
        let (positions, classes) = self.dots.snapshot();
        self.dot_pacer.snapshot_taken();
        self.rec.log(
            "session/dots",
            &rerun::Points3D::new(positions).with_radii([SESSION_DOT_RADIUS_MM]).with_class_ids(classes),
        )
    }

    fn log_entries(&mut self, mut entries: Vec<NeedleEntry>) -> RecordingStreamResult<()> {
        entries.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
        for e in entries {
            let t = convert::clamp_time_s(e.time_s);
            self.rec.set_duration_secs(SESSION_TIMELINE, t);
            self.rec.log("session/entry_depth_mm", &rerun::Scalars::single(e.depth_mm))?;
            self.entries.push(convert::f32x3(e.head_mm));
            self.last_entry_time_s = self.last_entry_time_s.max(t);
            if self.entry_pacer.record(self.entries.len()) {
                self.log_entry_snapshot()?;
            }
        }
        Ok(())
    }

    fn log_entry_snapshot(&mut self) -> RecordingStreamResult<()> {
        self.rec.set_duration_secs(SESSION_TIMELINE, self.last_entry_time_s);
        self.entry_pacer.snapshot_taken();
        self.rec.log(
            "session/entries",
            &rerun::Points3D::new(self.entries.iter().copied())
                .with_radii([ENTRY_RADIUS_MM])
                .with_colors([rerun::Color::from_rgb(255, 0, 255)]),
        )
    }

    /// The final state of the growing sets, so the end of the timeline shows everything.
    fn flush_snapshots(&mut self) -> RecordingStreamResult<()> {
        if self.dot_pacer.has_pending() {
            self.log_dot_snapshot()?;
        }
        if self.entry_pacer.has_pending() {
            self.log_entry_snapshot()?;
        }
        Ok(())
    }
}

/// A rerun transform mapping child coordinates into the parent (`parent_from_child`).
fn transform(parent_from_child: &Isometry3<f64>) -> rerun::Transform3D {
    let t = parent_from_child.translation.vector;
    let q = parent_from_child.rotation.quaternion();
    rerun::Transform3D::from_translation([t.x as f32, t.y as f32, t.z as f32])
        .with_quaternion(rerun::Quaternion::from_xyzw([q.i as f32, q.j as f32, q.k as f32, q.w as f32]))
}
