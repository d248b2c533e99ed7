//! `smp calibrate sim` meets the targets (15 hand-eye views, 0.2 px corner noise), and
//! the views it writes calibrate again through the file-based commands, whose results agree.

use smp_cli::calibrate_cmd::{hand_eye, intrinsics, HandEyeArgs, IntrinsicsArgs};
use smp_cli::sim::calibrate::{sim, CalibrateSimArgs};

#[test]
fn simulated_calibration_meets_the_targets_and_its_files_calibrate_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cal");
    let a = CalibrateSimArgs { views: 15, noise_px: 0.2, intrinsics_noise_px: 0.0, seed: 1, out: Some(dir.clone()) };
    let r = sim(&a).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert!(r.hand_eye_err_mm <= 0.2, "hand-eye {} mm", r.hand_eye_err_mm);
    assert!(r.hand_eye_err_deg <= 0.1, "hand-eye {} deg", r.hand_eye_err_deg);
    assert!(r.intrinsics_err_px <= 1.0, "intrinsics {} px", r.intrinsics_err_px);
    assert!(r.tcp_err_mm <= 0.1, "tcp {} mm", r.tcp_err_mm);
    assert!(r.reprojection_rms_px < 0.2, "{}", r.reprojection_rms_px);

    // The written views through the file commands.
    let intr_file = tmp.path().join("intrinsics.toml");
    let ir = intrinsics(&IntrinsicsArgs { images: dir.join("intrinsics"), board: None, out: intr_file.clone() })
        .unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert_eq!(ir.views_used + ir.views_rejected.len(), r.intrinsic_views + r.intrinsic_views_rejected.len());
    let he_file = tmp.path().join("hand-eye.toml");
    let hr = hand_eye(&HandEyeArgs {
        images: dir.join("hand-eye"),
        poses: dir.join("hand-eye").join("poses.toml"),
        intrinsics: intr_file,
        board: None,
        out: he_file.clone(),
    })
    .unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    let truth = smp_core::rig::Rig::default_sim().flange_camera.flange_from_camera.to_isometry();
    let (mm, deg) = smp_vision::calibrate::pose_error(&hr.flange_from_camera.to_isometry(), &truth);
    assert!(mm <= 0.2 && deg <= 0.1, "file-based hand-eye {mm} mm {deg} deg");
    let text = std::fs::read_to_string(&he_file).unwrap();
    assert!(text.contains("date = ") && text.contains("method = "), "{text}");

    // The pivot poses it wrote give the needle tip again.
    let said = smp_cli::calibrate_cmd::tcp(&dir.join("tcp-poses.toml"), &tmp.path().join("tcp.toml"))
        .unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert!(said.contains("needle tip"), "{said}");
    let tcp = std::fs::read_to_string(tmp.path().join("tcp.toml")).unwrap();
    assert!(tcp.contains("flange_from_needle_tip_mm"), "{tcp}");

    // A poses file naming an image that is not there: a clear error naming it.
    let bad = tmp.path().join("bad-poses.toml");
    let poses = std::fs::read_to_string(dir.join("hand-eye").join("poses.toml")).unwrap();
    std::fs::write(&bad, poses.replacen("view00.png", "missing.png", 1)).unwrap();
    let e = hand_eye(&HandEyeArgs {
        images: dir.join("hand-eye"),
        poses: bad,
        intrinsics: tmp.path().join("intrinsics.toml"),
        board: None,
        out: tmp.path().join("x.toml"),
    })
    .expect_err("a missing image must be refused");
    assert!(e.to_string().contains("missing.png"), "{e}");
}
