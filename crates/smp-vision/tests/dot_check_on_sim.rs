//! The camera check of uncertain dots on synthetic patients: a session's needle entries are
//! deposited through each patient's own skin model (fresh, 0-0.1 mm off their plan), the
//! flange camera is put over each planned site as the executor would, and vision decides
//! Present / Absent / Unclear. Scored against the simulator's truth over a few hundred sites:
//! deposited sites, untouched bare skin, untouched sites 0.5-0.7 mm from a follicle, from an
//! earlier session's healed dot or from a fresh dot of this session, on a medium (Fitzpatrick
//! II-III), a dark (VI) and a light (I, hair-bearing) patient; plus sites out of view and
//! facing away.
//!
//! The safety figure is `deposited -> Absent`: such a dot would be planned again and tattooed
//! twice, so it must be zero. `untouched -> Present` leaves a gap (a dot is lost, not
//! doubled) and is held to zero as well.
//!
//! `cargo test -p smp-vision --test on_sim dot_check_on_sim:: -- --nocapture` prints the confusion.

use std::collections::BTreeMap;

use nalgebra::{Isometry3, Point3, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smp_core::rig::Rig;
use smp_core::spatial::PointGrid;
use smp_core::NeedleEntry;
use smp_sim::dot_site::DotSiteScene;
use smp_sim::patient::{up_direction_head, PatientSpec, SyntheticPatient, DEFAULT_PATIENT_TOML};
use smp_sim::render::RenderConfig;
use smp_sim::skin::{heal, DepositInput};
use smp_vision::dot_check::{check_dot_site, DotCheckConfig, DotSiteCheck, UnclearReason};

/// Session parameters (DOMAIN.md defaults).
const DWELL_S: f64 = 0.1;
const DEPTH_MM: f64 = 1.0;
const DILUTION_PCT: f64 = 50.0;
/// Crop of the flange camera rendered per site (25 px/mm: 2.9 mm square).
const CROP_PX: u32 = 72;
/// Largest tilt of the skin from the vertical camera at a checked site, degrees.
const MAX_TILT_DEG: f64 = 35.0;
/// Largest distance of a deposited dot from its plan, mm.
const MAX_DEPOSIT_OFFSET_MM: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Deposited,
    Bare,
    NearFollicle,
    NearEarlierDot,
    NearSessionDot,
}

impl Kind {
    fn deposited(self) -> bool {
        self == Kind::Deposited
    }
}

#[derive(Debug, Clone, Copy)]
struct Site {
    head_mm: [f64; 3],
    normal_head: [f64; 3],
    kind: Kind,
}

fn arr(p: &Point3<f64>) -> [f64; 3] {
    [p.x, p.y, p.z]
}

/// Sampler of skin points facing the camera within `MAX_TILT_DEG`.
struct Sampler<'a> {
    patient: &'a SyntheticPatient,
    up: Vector3<f64>,
    e1: Vector3<f64>,
    e2: Vector3<f64>,
}

impl<'a> Sampler<'a> {
    fn new(patient: &'a SyntheticPatient, base_from_head: &Isometry3<f64>) -> Self {
        let up = up_direction_head(base_from_head);
        let e1 = up.cross(&Vector3::y()).normalize();
        let e2 = up.cross(&e1);
        Sampler { patient, up, e1, e2 }
    }

    fn random_point(&self, rng: &mut ChaCha8Rng) -> Option<(Point3<f64>, Vector3<f64>)> {
        let t: f64 = rng.random_range(0.0..40f64.to_radians());
        let a: f64 = rng.random_range(0.0..std::f64::consts::TAU);
        let dir = self.up + (self.e1 * a.cos() + self.e2 * a.sin()) * t.tan();
        self.surface(&[dir.x, dir.y, dir.z])
    }

    /// The surface point toward `p` (radially) and its normal, if it faces the camera enough.
    fn surface(&self, p: &[f64; 3]) -> Option<(Point3<f64>, Vector3<f64>)> {
        let ell = self.patient.ellipsoid();
        let q = ell.point_in_direction(&Vector3::from(*p).normalize());
        let n = ell.normal(&q);
        (n.dot(&self.up).acos().to_degrees() <= MAX_TILT_DEG).then_some((q, n))
    }

    /// A point 0.5-0.7 mm from `c` on the skin.
    fn near(&self, c: [f64; 3], rng: &mut ChaCha8Rng) -> Option<(Point3<f64>, Vector3<f64>)> {
        let n = self.patient.ellipsoid().normal(&Point3::from(c));
        let t1 = n.cross(&Vector3::x()).normalize();
        let t2 = n.cross(&t1);
        let a: f64 = rng.random_range(0.0..std::f64::consts::TAU);
        let r: f64 = rng.random_range(0.5..0.7);
        let p = Vector3::from(c) + (t1 * a.cos() + t2 * a.sin()) * r;
        self.surface(&[p.x, p.y, p.z])
    }
}

struct PatientCase {
    name: &'static str,
    toml: String,
    seed: u64,
}

/// The session and camera the sites are checked with.
struct Conditions {
    dilution_pct: f64,
    render: RenderConfig,
}

/// Confusion counts: (site kind, answer) -> count.
type Confusion = BTreeMap<(Kind, &'static str), usize>;

fn answer(c: &DotSiteCheck) -> &'static str {
    match c {
        DotSiteCheck::Present { .. } => "present",
        DotSiteCheck::Absent { .. } => "absent",
        DotSiteCheck::Unclear { .. } => "unclear",
    }
}

/// Figures over all patients: found-centre errors and the contrast margins.
struct Stats {
    offsets_mm: Vec<f64>,
    present_min_contrast: f64,
    absent_max_contrast: f64,
}

/// Places the sites on one patient, deposits the session, renders and checks every site.
fn run_patient(case: &PatientCase, cond: &Conditions, per_kind: usize, confusion: &mut Confusion, stats: &mut Stats) {
    let spec = PatientSpec::from_toml_str(&case.toml).expect("patient file");
    let started = std::time::Instant::now();
    let patient = SyntheticPatient::generate(&spec);
    let rig = Rig::default_sim();
    let base_from_head = rig.base_from_head_nominal();
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
    let follicles = PointGrid::from_points(1.0, patient.truth_follicles_head().iter().copied());

    // An earlier session's healed dots in the same area, kept apart from the follicles.
    let sampler = Sampler::new(&patient, &base_from_head);
    let mut earlier = PointGrid::from_points(1.0, patient.truth_prior_dots_head().iter().copied());
    let mut earlier_new = Vec::new();
    for _ in 0..20_000 {
        if earlier_new.len() >= per_kind {
            break;
        }
        let Some((q, _)) = sampler.random_point(&mut rng) else { continue };
        let p = arr(&q);
        if follicles.any_within(p, 0.6) || earlier.any_within(p, 1.5) {
            continue;
        }
        earlier.insert(p);
        earlier_new.push(p);
    }
    let inputs: Vec<DepositInput> = earlier_new
        .iter()
        .map(|p| DepositInput {
            entry: NeedleEntry { base_mm: [f64::NAN; 3], head_mm: *p, depth_mm: DEPTH_MM, time_s: 0.0 },
            dwell_s: DWELL_S,
            session: 1,
            dilution_pct: 60.0,
        })
        .collect();
    let healed = heal(&patient.deposit(&inputs).dots, 16.0, &spec.healing, spec.seed).dots;
    let patient = patient.with_prior_dots(healed).expect("earlier dots");
    let sampler = Sampler::new(&patient, &base_from_head);

    // This session's sites: every kind kept 1.2 mm from the others (but the pairs made on
    // purpose) and clear of follicles and earlier dots, as a plan's spacing rule does.
    let follicles_in_reach = patient
        .truth_follicles()
        .iter()
        .any(|f| Vector3::from(f.normal_head).dot(&sampler.up).acos().to_degrees() < MAX_TILT_DEG - 5.0);
    let mut sites: Vec<Site> = Vec::new();
    let mut taken = PointGrid::new(1.0);
    let clear = |p: [f64; 3], taken: &PointGrid, follicle_mm: f64, earlier_mm: f64| {
        !follicles.any_within(p, follicle_mm) && !earlier.any_within(p, earlier_mm) && !taken.any_within(p, 1.2)
    };
    let place = |kind: Kind, sites: &mut Vec<Site>, taken: &mut PointGrid, rng: &mut ChaCha8Rng| {
        let mut n = 0;
        for _ in 0..50_000 {
            if n >= per_kind {
                break;
            }
            let found = match kind {
                Kind::Deposited | Kind::Bare => {
                    sampler.random_point(rng).filter(|(q, _)| clear(arr(q), taken, 0.8, 0.8))
                }
                Kind::NearFollicle => {
                    let Some((c, _)) = sampler.random_point(rng) else { continue };
                    let Some((k, _)) = follicles.nearest_within(arr(&c), 3.0) else { continue };
                    sampler.near(follicles.point(k), rng).filter(|(q, _)| clear(arr(q), taken, 0.45, 0.8))
                }
                Kind::NearEarlierDot => {
                    let Some(&c) = earlier_new.get(rng.random_range(0..earlier_new.len().max(1))) else { continue };
                    sampler.near(c, rng).filter(|(q, _)| clear(arr(q), taken, 0.45, 0.45))
                }
                Kind::NearSessionDot => {
                    let deposited: Vec<[f64; 3]> =
                        sites.iter().filter(|s| s.kind == Kind::Deposited).map(|s| s.head_mm).collect();
                    let Some(&c) = deposited.get(rng.random_range(0..deposited.len().max(1))) else { continue };
                    // Next to a deposited site on purpose: only the other sites must be far.
                    sampler.near(c, rng).filter(|(q, _)| {
                        let p = arr(q);
                        !follicles.any_within(p, 0.45)
                            && !earlier.any_within(p, 0.8)
                            && sites
                                .iter()
                                .filter(|s| s.head_mm != c)
                                .all(|s| (Point3::from(s.head_mm) - q).norm() >= 1.2)
                    })
                }
            };
            let Some((q, nrm)) = found else { continue };
            taken.insert(arr(&q));
            sites.push(Site { head_mm: arr(&q), normal_head: [nrm.x, nrm.y, nrm.z], kind });
            n += 1;
        }
        // A bald top (Norwood 7) has no follicle the vertical camera can see.
        let optional = kind == Kind::NearFollicle && !follicles_in_reach;
        assert!(optional || n >= per_kind / 2, "{}: only {n} sites of kind {kind:?}", case.name);
    };
    for kind in [Kind::Deposited, Kind::Bare, Kind::NearFollicle, Kind::NearEarlierDot, Kind::NearSessionDot] {
        if kind == Kind::NearFollicle && !follicles_in_reach {
            continue;
        }
        place(kind, &mut sites, &mut taken, &mut rng);
    }

    // The session's needle entries: each deposited site, 0-0.1 mm off its plan on the skin.
    let entries: Vec<NeedleEntry> = sites
        .iter()
        .filter(|s| s.kind.deposited())
        .map(|s| {
            let n = Vector3::from(s.normal_head);
            let t1 = n.cross(&Vector3::x()).normalize();
            let t2 = n.cross(&t1);
            let a: f64 = rng.random_range(0.0..std::f64::consts::TAU);
            let r: f64 = MAX_DEPOSIT_OFFSET_MM * rng.random::<f64>().sqrt();
            let p = Point3::from(s.head_mm) + (t1 * a.cos() + t2 * a.sin()) * r;
            let b = base_from_head * p;
            NeedleEntry { base_mm: arr(&b), head_mm: arr(&p), depth_mm: DEPTH_MM, time_s: 0.0 }
        })
        .collect();
    let scene =
        DotSiteScene::from_entries(&patient, &entries, DWELL_S, 1, cond.dilution_pct, base_from_head).expect("deposit");
    assert_eq!(scene.deposited().len(), entries.len());
    // The check knows the session's dot from the test-dot fit; here the model's value.
    let dot_diameter_mm = spec.skin_response.diameter_mm(DWELL_S, DEPTH_MM);
    let render = RenderConfig { seed: case.seed, ..cond.render.clone() };
    let cfg = DotCheckConfig::default();

    eprintln!("{}: {} sites placed and deposited in {:.1} s", case.name, sites.len(), started.elapsed().as_secs_f64());
    let mut deposited_iter = scene.deposited().iter();
    for (i, s) in sites.iter().enumerate() {
        let v = scene
            .render_site(&rig, s.head_mm, Some((CROP_PX, CROP_PX)), &format!("{}-site-{i}", case.name), &render)
            .expect("render");
        let r = check_dot_site(
            &v.view.image,
            &v.view.intrinsics,
            &v.view.base_from_camera,
            &base_from_head,
            s.head_mm,
            s.normal_head,
            dot_diameter_mm,
            &cfg,
        )
        .expect("check");
        if s.kind.deposited() {
            let truth = deposited_iter.next().expect("one dot per entry");
            if let DotSiteCheck::Present { found_head_mm, .. } = &r {
                stats.offsets_mm.push((Point3::from(*found_head_mm) - Point3::from(truth.position_head_mm)).norm());
            }
        }
        match &r {
            DotSiteCheck::Present { contrast, .. } if s.kind.deposited() => {
                stats.present_min_contrast = stats.present_min_contrast.min(*contrast)
            }
            DotSiteCheck::Absent { contrast } if !s.kind.deposited() => {
                stats.absent_max_contrast = stats.absent_max_contrast.max(*contrast)
            }
            _ => {}
        }
        if answer(&r) != if s.kind.deposited() { "present" } else { "absent" } {
            eprintln!("{}: site {i} {:?}: {r:?}", case.name, s.kind);
        }
        *confusion.entry((s.kind, answer(&r))).or_default() += 1;
    }

    // Out of view and facing away, in the view over the first deposited site.
    let first = sites.iter().find(|s| s.kind.deposited()).expect("a deposited site");
    let v = scene.render_site(&rig, first.head_mm, Some((CROP_PX, CROP_PX)), "oov", &render).expect("render");
    let n = Vector3::from(first.normal_head);
    let t1 = n.cross(&Vector3::x()).normalize();
    let ell = patient.ellipsoid();
    let aside = ell.point_in_direction(&(Vector3::from(first.head_mm) + t1 * 4.0).normalize());
    let behind = ell.point_in_direction(&-Vector3::from(first.head_mm).normalize());
    for (what, q) in [("4 mm aside", aside), ("opposite side", behind)] {
        let nq = ell.normal(&q);
        let r = check_dot_site(
            &v.view.image,
            &v.view.intrinsics,
            &v.view.base_from_camera,
            &base_from_head,
            arr(&q),
            [nq.x, nq.y, nq.z],
            dot_diameter_mm,
            &cfg,
        )
        .expect("check");
        match &r {
            DotSiteCheck::Unclear { reason } => {
                assert!(
                    matches!(
                        reason,
                        UnclearReason::OutOfView { .. }
                            | UnclearReason::FacingAway { .. }
                            | UnclearReason::BehindCamera
                            | UnclearReason::TooOblique { .. }
                    ),
                    "{}: {what}: {reason}",
                    case.name
                );
            }
            other => panic!("{}: {what}: must be unclear, got {other:?}", case.name),
        }
        *confusion.entry((Kind::Bare, "unclear-out-of-view")).or_default() += 1;
    }
}

/// Runs every patient under `cond` and checks the confusion: never a deposited dot judged
/// absent, never an untouched site judged present, at most `max_unclear_pct` % unclear.
fn run_all(cond: &Conditions, per_kind: usize, max_unclear_pct: usize) {
    let blond = include_str!("../../../sim/patients/norwood2-fitz1-blond.toml");
    // The same hair-bearing head with Fitzpatrick VI skin and black hair: dark dots on dark
    // skin among dark follicles.
    let dark = blond
        .replace("fitzpatrick = 1", "fitzpatrick = 6")
        .replace("\"blond\"", "\"black\"")
        .replace("norwood2-fitz1-blond", "norwood2-fitz6-black");
    let cases = [
        PatientCase { name: "default-fitz2-3", toml: DEFAULT_PATIENT_TOML.to_string(), seed: 61 },
        PatientCase { name: "norwood2-fitz6-black", toml: dark, seed: 62 },
        PatientCase { name: "norwood2-fitz1-blond", toml: blond.to_string(), seed: 63 },
        PatientCase {
            name: "norwood7-fitz6-grey",
            toml: include_str!("../../../sim/patients/norwood7-fitz6-grey.toml").to_string(),
            seed: 64,
        },
    ];
    let started = std::time::Instant::now();
    let mut total: Confusion = BTreeMap::new();
    let mut stats = Stats { offsets_mm: Vec::new(), present_min_contrast: 1.0, absent_max_contrast: -1.0 };
    for case in &cases {
        let mut c = Confusion::new();
        run_patient(case, cond, per_kind, &mut c, &mut stats);
        eprintln!("{}: {c:?}", case.name);
        for (k, v) in c {
            *total.entry(k).or_default() += v;
        }
    }
    let count = |kind: Kind, a: &str| total.get(&(kind, a)).copied().unwrap_or(0);
    let kinds = [Kind::Deposited, Kind::Bare, Kind::NearFollicle, Kind::NearEarlierDot, Kind::NearSessionDot];
    eprintln!(
        "confusion over {} sites ({:.1} s):",
        kinds
            .iter()
            .map(|k| ["present", "absent", "unclear"].iter().map(|a| count(*k, a)).sum::<usize>())
            .sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    for k in kinds {
        eprintln!(
            "  {k:?}: present {} absent {} unclear {}",
            count(k, "present"),
            count(k, "absent"),
            count(k, "unclear")
        );
    }
    eprintln!(
        "  contrast: weakest deposited dot {:.2}, strongest untouched site {:.2} (thresholds {} / {})",
        stats.present_min_contrast,
        stats.absent_max_contrast,
        DotCheckConfig::default().present_min_contrast,
        DotCheckConfig::default().absent_max_contrast
    );
    let offsets_mm = &mut stats.offsets_mm;
    offsets_mm.sort_by(f64::total_cmp);
    let rms = (offsets_mm.iter().map(|d| d * d).sum::<f64>() / offsets_mm.len().max(1) as f64).sqrt();
    eprintln!(
        "  found centre vs deposited dot: rms {rms:.3} mm, max {:.3} mm over {}",
        offsets_mm.last().copied().unwrap_or(0.0),
        offsets_mm.len()
    );

    // Safety: a deposited dot is never judged absent (it would be tattooed twice).
    assert_eq!(count(Kind::Deposited, "absent"), 0, "deposited dots judged absent");
    // An untouched site is never judged present (the dot would be lost).
    for k in &kinds[1..] {
        assert_eq!(count(*k, "present"), 0, "{k:?} sites judged present");
    }
    // Almost every site gets a clear answer.
    let deposited: usize = ["present", "absent", "unclear"].iter().map(|a| count(Kind::Deposited, a)).sum();
    assert!(count(Kind::Deposited, "present") * 100 >= deposited * (100 - max_unclear_pct), "present recall too low");
    for k in &kinds[1..] {
        let all: usize = ["present", "absent", "unclear"].iter().map(|a| count(*k, a)).sum();
        assert!(count(*k, "absent") * 100 >= all * (100 - max_unclear_pct), "{k:?}: too few judged absent");
    }
    assert!(rms < 0.05, "found centres {rms:.3} mm rms from the deposited dots");
}

#[test]
fn uncertain_dots_are_resolved_by_the_camera_on_dark_and_light_skin() {
    let cond = Conditions { dilution_pct: DILUTION_PCT, render: RenderConfig::default() };
    run_all(&cond, 24, 3);
}

/// The faintest pigment a session uses (100 % dilution: darkness ~0.48) through a camera with
/// shot noise, doubled read noise and a real aperture (curved skin off the focus plane blurs).
#[test]
fn faint_pigment_through_a_noisy_defocused_camera_is_never_doubled() {
    let render = RenderConfig {
        noise_sigma_levels: 4.0,
        full_well_electrons: 6000.0,
        aperture_mm: 4.0,
        ..RenderConfig::default()
    };
    let cond = Conditions { dilution_pct: 100.0, render };
    run_all(&cond, 12, 5);
}
