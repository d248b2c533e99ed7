//! `smp sim render`: images and truth.json agree — every follicle and earlier dot the truth
//! places in a scan tile is a dark spot at that pixel of that tile's PNG.

use std::collections::BTreeMap;

use smp_cli::sim::cmd::{render, SimRenderArgs};

#[test]
fn truth_pixels_land_on_dark_spots_of_the_rendered_tiles() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("render");
    let patient = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../sim/patients/followup-s2.toml"));
    let a = SimRenderArgs { patient: Some(patient), rig: None, out: out.clone(), max_tilt_deg: 35.0, faults: None };
    render(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("truth.json")).unwrap()).unwrap();
    let cameras = truth["cameras"].as_array().unwrap();
    assert!(cameras.len() > 5, "overview and tiles");
    let mut images = BTreeMap::new();
    for c in cameras {
        let file = c["file"].as_str().unwrap();
        images.insert(c["label"].as_str().unwrap().to_string(), smp_cli::files::read_png(&out.join(file)).unwrap());
    }
    let luma = |img: &smp_core::image::RgbImage, x: f64, y: f64| {
        let (x, y) = (x.round() as u32, y.round() as u32);
        let i = ((y.min(img.height - 1) * img.width + x.min(img.width - 1)) * 3) as usize;
        (img.data[i] as f64 + img.data[i + 1] as f64 + img.data[i + 2] as f64) / 3.0
    };
    for kind in ["follicles", "prior_dots"] {
        let (mut checked, mut dark) = (0, 0);
        for item in truth[kind].as_array().unwrap() {
            for (label, px) in item["pixels"].as_object().unwrap() {
                if !label.starts_with("tile") {
                    continue;
                }
                let img = &images[label];
                let (x, y) = (px[0].as_f64().unwrap(), px[1].as_f64().unwrap());
                if x < 12.0 || y < 12.0 || x > img.width as f64 - 13.0 || y > img.height as f64 - 13.0 {
                    continue;
                }
                // Darker at the centre than the ring of skin 10 px around it.
                let centre = luma(img, x, y);
                let ring: f64 = (0..8)
                    .map(|k| {
                        let t = k as f64 * std::f64::consts::FRAC_PI_4;
                        luma(img, x + 10.0 * t.cos(), y + 10.0 * t.sin())
                    })
                    .fold(f64::NEG_INFINITY, f64::max);
                checked += 1;
                dark += usize::from(centre < ring - 5.0);
            }
            if checked >= 400 {
                break;
            }
        }
        assert!(checked >= 100, "{kind}: {checked} checked");
        assert!(dark * 100 >= checked * 95, "{kind}: {dark} of {checked} truth pixels on a dark spot");
    }
}

/// A scan with lost camera frames, through files: `smp sim render --faults` loses the frames
/// the scenario names (tile003 on every attempt, capture #7 once), `smp scan` maps the rest,
/// names the view it never got, and refuses a scan directory with a frame file missing.
#[test]
fn lost_camera_frames_are_retried_then_named_and_the_rest_is_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("render");
    let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let a = SimRenderArgs {
        patient: None,
        rig: None,
        out: out.clone(),
        max_tilt_deg: 35.0,
        faults: Some(root.join("sim/faults/camera_frame_drop.toml")),
    };
    let said = render(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert!(said.contains("tile003"), "{said}");
    let manifest =
        smp_core::capture::ScanManifest::from_json_str(&std::fs::read_to_string(out.join("views.json")).unwrap())
            .unwrap();
    // Overview #0, tile000-002 #1-3, tile003 lost three times (#4-6), tile004 lost once (#7)
    // and re-captured (#8).
    let lost: Vec<(String, u64)> =
        manifest.views.iter().filter(|v| v.image.is_none()).map(|v| (v.label.clone(), v.frame_index)).collect();
    let expect: Vec<(String, u64)> =
        vec![("tile003".into(), 4), ("tile003".into(), 5), ("tile003".into(), 6), ("tile004".into(), 7)];
    assert_eq!(lost, expect);
    assert!(manifest.views.iter().any(|v| v.label == "tile004" && v.frame_index == 8 && v.image.is_some()));
    assert!(!out.join("tile003.png").exists());

    let map_path = tmp.path().join("map.json");
    let s = smp_cli::scan_cmd::ScanArgs { images: out.clone(), rig: None, out: map_path.clone() };
    let r = smp_cli::scan_cmd::scan(&s).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert_eq!(r.views_lost, vec!["tile003".to_string()]);
    assert_eq!(r.frames_lost, 4);
    assert!(r.follicles > 1000, "{} follicles", r.follicles);
    let map = smp_core::map::ScalpMap::from_json_str(&std::fs::read_to_string(&map_path).unwrap()).unwrap();
    assert!(map.warnings.iter().any(|w| w.contains("tile003") && w.contains("not mapped")), "{:?}", map.warnings);

    // A frame file that the manifest lists but the directory lacks: a clear error naming it.
    std::fs::remove_file(out.join("tile005.png")).unwrap();
    let e = smp_cli::scan_cmd::scan(&s).expect_err("a missing frame file must be refused");
    assert!(e.to_string().contains("tile005.png"), "{e}");
}
