use std::time::Duration;

use nalgebra::Isometry3;
use proptest::prelude::*;

use super::*;

fn drain(c: &mut SessionCore) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn started(uncertain: usize, flange: bool, band: bool) -> SessionCore {
    let mut c = SessionCore::new(CoreConfig::default());
    c.handle(Input::Start { uncertain, flange_camera: flange, band_cameras: band });
    c
}

fn drift(t: f64) -> TrackEvent {
    TrackEvent::Drift {
        at: Duration::from_secs_f64(t),
        translation_mm: 2.0,
        rotation_deg: 0.1,
        base_from_head: Isometry3::identity(),
    }
}

fn no_notes(actions: Vec<Action>) -> Vec<Action> {
    actions.into_iter().filter(|a| !matches!(a, Action::Note(_))).collect()
}

#[test]
fn a_fresh_session_streams_and_completes() {
    let mut c = started(0, true, true);
    assert_eq!(drain(&mut c), [Action::Stream]);
    c.handle(Input::Executor(ExecutorState::Running));
    c.handle(Input::RunEnded(RunEnd::Completed));
    assert_eq!(drain(&mut c), [Action::Finish(Outcome::Completed)]);
    // Nothing after the end.
    c.handle(Input::RunEnded(RunEnd::Completed));
    assert!(drain(&mut c).is_empty());
}

#[test]
fn a_resume_looks_at_uncertain_dots_first_when_a_camera_can() {
    let mut c = started(3, true, false);
    assert_eq!(drain(&mut c), [Action::CheckUncertain]);
    c.handle(Input::Checked);
    assert_eq!(drain(&mut c), [Action::Stream]);
    // Without a flange camera: the operator resolves them; the rest is streamed.
    let mut c = started(3, false, false);
    let a = drain(&mut c);
    assert!(matches!(&a[0], Action::Note(n) if n.contains("smp resolve")), "{a:?}");
    assert_eq!(a[1], Action::Stream);
}

#[test]
fn a_drift_stops_the_run_reregisters_checks_and_streams_the_rest() {
    let mut c = started(0, true, true);
    drain(&mut c);
    c.handle(Input::Executor(ExecutorState::Running));
    c.handle(Input::Track(drift(10.0)));
    assert_eq!(no_notes(drain(&mut c)), [Action::Executor(OperatorCommand::Abort), Action::StopTracking]);
    // A second drift report before the run ended changes nothing.
    c.handle(Input::Track(drift(10.2)));
    assert!(drain(&mut c).is_empty());
    c.handle(Input::RunEnded(RunEnd::Aborted { emergency: false }));
    assert_eq!(drain(&mut c), [Action::Reregister]);
    c.handle(Input::Reregistered(Some("re-registered".into())));
    assert_eq!(no_notes(drain(&mut c)), [Action::CheckUncertain]);
    c.handle(Input::Checked);
    assert_eq!(drain(&mut c), [Action::Stream]);
    assert_eq!(c.drifts(), 1);
}

#[test]
fn a_head_that_keeps_moving_stops_the_session_for_the_operator() {
    let mut c = SessionCore::new(CoreConfig { max_reregistrations: 1 });
    c.handle(Input::Start { uncertain: 0, flange_camera: false, band_cameras: true });
    drain(&mut c);
    for k in 0..2 {
        c.handle(Input::Executor(ExecutorState::Running));
        c.handle(Input::Track(drift(10.0 * f64::from(k + 1))));
        c.handle(Input::RunEnded(RunEnd::Aborted { emergency: false }));
        let a = no_notes(drain(&mut c));
        if k == 0 {
            assert_eq!(a.last(), Some(&Action::Reregister));
            c.handle(Input::Reregistered(Some("ok".into())));
            assert_eq!(no_notes(drain(&mut c)), [Action::Stream], "no camera: straight to streaming");
        } else {
            assert!(matches!(a.last(), Some(Action::Finish(Outcome::HeldForOperator(_)))), "{a:?}");
        }
    }
}

#[test]
fn lost_fiducials_hold_a_running_run_and_their_return_resumes_it() {
    let mut c = started(0, false, true);
    drain(&mut c);
    c.handle(Input::Executor(ExecutorState::Running));
    let lost = TrackEvent::FiducialsLost { at: Duration::from_secs(6), since: Duration::from_secs(5) };
    c.handle(Input::Track(lost.clone()));
    assert_eq!(no_notes(drain(&mut c)), [Action::Executor(OperatorCommand::Pause)]);
    c.handle(Input::Executor(ExecutorState::Paused));
    let back = TrackEvent::FiducialsRecovered { at: Duration::from_secs(8), lost_for: Duration::from_secs(3) };
    c.handle(Input::Track(back.clone()));
    assert_eq!(no_notes(drain(&mut c)), [Action::Executor(OperatorCommand::Resume)]);

    // The operator paused meanwhile: the tracker does not lift the operator's pause.
    c.handle(Input::Executor(ExecutorState::Running));
    c.handle(Input::Track(lost.clone()));
    drain(&mut c);
    c.handle(Input::Operator(OperatorCommand::Pause));
    assert_eq!(drain(&mut c), [Action::Executor(OperatorCommand::Pause)]);
    c.handle(Input::Track(back));
    assert!(no_notes(drain(&mut c)).is_empty());

    // Already held by the operator: a loss is not the tracker's to hold (nor to lift).
    let mut c = started(0, false, true);
    drain(&mut c);
    c.handle(Input::Executor(ExecutorState::Paused));
    c.handle(Input::Track(lost));
    assert!(no_notes(drain(&mut c)).is_empty());
}

#[test]
fn operator_commands_between_runs() {
    let mut c = started(0, true, true);
    drain(&mut c);
    c.handle(Input::Executor(ExecutorState::Running));
    c.handle(Input::Track(drift(3.0)));
    c.handle(Input::RunEnded(RunEnd::Aborted { emergency: false }));
    drain(&mut c);
    // Re-registering: a pause has nothing to act on; an abort ends the session once the
    // registration returns.
    c.handle(Input::Operator(OperatorCommand::Pause));
    assert!(matches!(drain(&mut c)[..], [Action::Refuse { command: OperatorCommand::Pause, .. }]));
    c.handle(Input::Operator(OperatorCommand::Abort));
    assert!(drain(&mut c).is_empty());
    c.handle(Input::Reregistered(Some("ok".into())));
    assert_eq!(no_notes(drain(&mut c)), [Action::Finish(Outcome::Aborted { emergency: false })]);
}

#[test]
fn an_operator_abort_during_a_drift_stop_ends_the_session() {
    let mut c = started(0, true, true);
    drain(&mut c);
    c.handle(Input::Executor(ExecutorState::Running));
    c.handle(Input::Track(drift(3.0)));
    drain(&mut c);
    c.handle(Input::Operator(OperatorCommand::EmergencyStop));
    assert_eq!(drain(&mut c), [Action::Executor(OperatorCommand::EmergencyStop)]);
    c.handle(Input::RunEnded(RunEnd::Aborted { emergency: true }));
    assert_eq!(drain(&mut c), [Action::Finish(Outcome::Aborted { emergency: true })]);
}

#[test]
fn a_head_that_does_not_settle_holds_the_session() {
    let mut c = started(0, false, true);
    drain(&mut c);
    c.handle(Input::Track(drift(1.0)));
    c.handle(Input::RunEnded(RunEnd::Aborted { emergency: false }));
    drain(&mut c);
    c.handle(Input::Reregistered(None));
    assert!(matches!(drain(&mut c)[..], [Action::Finish(Outcome::HeldForOperator(_))]));
}

#[test]
fn faults_and_refusals_end_the_session_with_their_reason() {
    let mut c = started(0, false, false);
    drain(&mut c);
    c.handle(Input::RunEnded(RunEnd::NotStarted("the controller reports Alarm".into())));
    assert_eq!(drain(&mut c), [Action::Finish(Outcome::Faulted("the controller reports Alarm".into()))]);
    let mut c = started(0, false, false);
    drain(&mut c);
    c.handle(Input::Operator(OperatorCommand::Abort));
    drain(&mut c);
    c.handle(Input::RunEnded(RunEnd::Completed));
    assert_eq!(
        drain(&mut c),
        [Action::Finish(Outcome::Aborted { emergency: false })],
        "an abort after the last answer"
    );
}

fn any_input() -> impl Strategy<Value = Input> {
    let t = || (0.0f64..100.0).prop_map(Duration::from_secs_f64);
    prop_oneof![
        (0usize..3, any::<bool>(), any::<bool>()).prop_map(|(u, f, b)| Input::Start {
            uncertain: u,
            flange_camera: f,
            band_cameras: b
        }),
        prop_oneof![
            Just(ExecutorState::Connecting),
            Just(ExecutorState::Running),
            Just(ExecutorState::Paused),
            Just(ExecutorState::Fault),
            Just(ExecutorState::Aborted),
            Just(ExecutorState::Done)
        ]
        .prop_map(Input::Executor),
        prop_oneof![
            Just(RunEnd::Completed),
            any::<bool>().prop_map(|e| RunEnd::Aborted { emergency: e }),
            Just(RunEnd::Faulted("fault".into())),
            Just(RunEnd::NothingToDo)
        ]
        .prop_map(Input::RunEnded),
        t().prop_map(|at| Input::Track(TrackEvent::Drift {
            at,
            translation_mm: 2.0,
            rotation_deg: 0.0,
            base_from_head: Isometry3::identity()
        })),
        (t(), t()).prop_map(|(at, since)| Input::Track(TrackEvent::FiducialsLost { at, since })),
        (t(), t()).prop_map(|(at, lost_for)| Input::Track(TrackEvent::FiducialsRecovered { at, lost_for })),
        prop_oneof![
            Just(OperatorCommand::Pause),
            Just(OperatorCommand::Resume),
            Just(OperatorCommand::Abort),
            Just(OperatorCommand::EmergencyStop)
        ]
        .prop_map(Input::Operator),
        prop_oneof![Just(None), Just(Some("ok".to_string()))].prop_map(Input::Reregistered),
        Just(Input::Checked),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens: the session finishes at most once and does nothing after but refuse; nothing is
    /// streamed or sent to an executor after an operator's stop; the tracker never resumes a
    /// run the operator paused.
    #[test]
    fn rules_hold_for_any_sequence_of_inputs(inputs in proptest::collection::vec(any_input(), 1..60)) {
        let mut c = SessionCore::new(CoreConfig::default());
        let mut finished = 0;
        let mut operator_stop = false;
        let mut operator_paused = false;
        for input in inputs {
            let from_operator = match &input {
                Input::Operator(OperatorCommand::Abort | OperatorCommand::EmergencyStop) => {
                    operator_stop = true;
                    true
                }
                Input::Operator(OperatorCommand::Pause) => { operator_paused = true; true }
                Input::Operator(OperatorCommand::Resume) => { operator_paused = false; true }
                _ => false,
            };
            c.handle(input);
            for a in drain(&mut c) {
                // After the end only refusals (the operator is told the session is over).
                prop_assert!(finished == 0 || matches!(a, Action::Refuse { .. }), "an action after the end: {a:?}");
                match a {
                    Action::Finish(_) => finished += 1,
                    Action::Stream | Action::Reregister | Action::CheckUncertain => {
                        prop_assert!(!operator_stop, "{a:?} after the operator's stop");
                    }
                    Action::Executor(OperatorCommand::Resume) if !from_operator => {
                        prop_assert!(!operator_paused, "the tracker resumed the operator's pause");
                    }
                    Action::Executor(cmd) if !from_operator => {
                        prop_assert!(!operator_stop, "{cmd:?} from the tracker after the operator's stop");
                    }
                    _ => {}
                }
            }
        }
        prop_assert!(finished <= 1);
    }
}
