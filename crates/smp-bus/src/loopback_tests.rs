//! Tests with real zenoh sessions on loopback: two (or three) peers in one process, explicit
//! tcp/127.0.0.1 endpoints on free ports, multicast scouting off. Readiness is awaited by
//! retrying (the operator re-sends until acknowledged; telemetry is re-published until seen),
//! never by fixed sleeps alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use zenoh::Wait;

use super::*;

/// A port that was free a moment ago. Tests use distinct ports, so a collision needs another
/// process to grab the port in between.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn pair_configs() -> (BusConfig, BusConfig) {
    let port = free_port();
    let ctrl = BusConfig { rig: "chair-t".into(), ..BusConfig::listening(format!("tcp/127.0.0.1:{port}")) };
    let op = BusConfig {
        rig: "chair-t".into(),
        ack_timeout_s: 5.0,
        ..BusConfig::connecting(format!("tcp/127.0.0.1:{port}"))
    };
    (ctrl, op)
}

const WAIT: Duration = Duration::from_secs(8);

fn recv_within<T>(rx: &mut mpsc::Receiver<T>, within: Duration) -> Option<T> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(v) = rx.try_recv() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Play the executor: answer every delivered command with the safety rules in `state`, and
/// record every event, until `stop`.
fn serve(
    bus: &ControllerBus,
    rx: &mut mpsc::Receiver<ControlEvent>,
    state: SessionState,
    stop: &AtomicBool,
) -> Vec<ControlEvent> {
    let mut events = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match rx.try_recv() {
            Ok(ev) => {
                if let ControlEvent::Command(c) = &ev {
                    bus.decide(c, state).unwrap();
                }
                events.push(ev);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    events
}

fn commands_of(events: &[ControlEvent]) -> Vec<ReceivedCommand> {
    events.iter().filter_map(|e| if let ControlEvent::Command(c) = e { Some(c.clone()) } else { None }).collect()
}

fn telemetry(t_s: f64) -> Telemetry {
    Telemetry {
        state: SessionState::Running,
        dots_done: 3,
        dots_total: 10,
        last_dot: Some(2),
        machine: Some(MachinePosition { axes: "XYZ".into(), values: vec![10.0, 20.0, 30.0] }),
        fault: None,
        t_s,
        dropped_before: 0,
    }
}

#[test]
fn telemetry_reaches_the_operator() {
    let (c, o) = pair_configs();
    let ctrl = ControllerBus::open(&c, "s1").unwrap();
    let mut op = OperatorBus::open(&o, "s1", "ana").unwrap();
    let mut rx = op.telemetry().unwrap();
    assert!(matches!(op.telemetry(), Err(BusError::ReceiverTaken { .. })));
    let end = Instant::now() + WAIT;
    let mut got = None;
    let mut i = 0.0;
    while got.is_none() && Instant::now() < end {
        ctrl.publish_telemetry(&telemetry(i));
        i += 1.0;
        got = recv_within(&mut rx, Duration::from_millis(50));
    }
    let Some(TelemetryEvent::Sample(t)) = got else { panic!("no telemetry within {WAIT:?}: {got:?}") };
    assert_eq!(t.dots_done, 3);
    assert_eq!(t.machine.as_ref().map(|m| m.values.clone()), Some(vec![10.0, 20.0, 30.0]));
    assert!(ctrl.stats().telemetry_published >= 1);
    assert!(op.stats().telemetry_received >= 1);
    op.close();
    ctrl.close();
}

#[test]
fn pause_round_trip_is_accepted_and_delivered_once() {
    let (c, o) = pair_configs();
    let mut ctrl = ControllerBus::open(&c, "s2").unwrap();
    let mut rx = ctrl.commands().unwrap();
    let op = OperatorBus::open(&o, "s2", "ana").unwrap();
    let stop = AtomicBool::new(false);
    let (result, events) = std::thread::scope(|s| {
        let h = s.spawn(|| serve(&ctrl, &mut rx, SessionState::Running, &stop));
        let r = op.send(OperatorCommand::Pause);
        // Let late re-sends arrive, to check they are not delivered again.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (r, h.join().unwrap())
    });
    assert_eq!(result.unwrap(), AckResult::Accepted);
    let cmds = commands_of(&events);
    assert_eq!(cmds.len(), 1, "{events:?}");
    assert_eq!(cmds[0].command, OperatorCommand::Pause);
    assert_eq!(cmds[0].id.operator, "ana");
    op.close();
    ctrl.close();
}

#[test]
fn resume_while_running_is_refused() {
    let (c, o) = pair_configs();
    let mut ctrl = ControllerBus::open(&c, "s3").unwrap();
    let mut rx = ctrl.commands().unwrap();
    let op = OperatorBus::open(&o, "s3", "ana").unwrap();
    let stop = AtomicBool::new(false);
    let (resume, estop) = std::thread::scope(|s| {
        let h = s.spawn(|| serve(&ctrl, &mut rx, SessionState::Running, &stop));
        let resume = op.send(OperatorCommand::Resume);
        let estop = op.send(OperatorCommand::EmergencyStop);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        (resume, estop)
    });
    match resume.unwrap() {
        AckResult::Refused { reason } => assert!(reason.contains("only while paused"), "{reason}"),
        other => panic!("resume while running must be refused, got {other:?}"),
    }
    assert_eq!(estop.unwrap(), AckResult::Accepted);
    op.close();
    ctrl.close();
}

#[test]
fn command_for_a_stale_session_is_refused_by_the_bus() {
    let (c, o) = pair_configs();
    let mut ctrl = ControllerBus::open(&c, "current").unwrap();
    let mut rx = ctrl.commands().unwrap();
    let op = OperatorBus::open(&o, "yesterday", "ana").unwrap();
    let stop = AtomicBool::new(false);
    let (r, events) = std::thread::scope(|s| {
        let h = s.spawn(|| serve(&ctrl, &mut rx, SessionState::Paused, &stop));
        let r = op.send(OperatorCommand::Resume);
        stop.store(true, Ordering::Relaxed);
        (r, h.join().unwrap())
    });
    match r.unwrap() {
        AckResult::Refused { reason } => {
            assert!(reason.contains("yesterday") && reason.contains("current"), "{reason}")
        }
        other => panic!("stale session must be refused, got {other:?}"),
    }
    assert!(commands_of(&events).is_empty(), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, ControlEvent::Refused { .. })), "{events:?}");
    op.close();
    ctrl.close();
}

/// A raw zenoh peer (not an `OperatorBus`) connected to the controller, to put arbitrary bytes.
fn raw_peer(connect_to: &BusConfig) -> zenoh::Session {
    zenoh::open(connect_to.to_zenoh().unwrap()).wait().unwrap()
}

#[test]
fn garbage_on_the_control_key_is_an_error_event_and_no_command() {
    let (c, o) = pair_configs();
    let mut ctrl = ControllerBus::open(&c, "s4").unwrap();
    let mut rx = ctrl.commands().unwrap();
    let raw = raw_peer(&o);
    let key = ctrl.keys().control.clone();
    let end = Instant::now() + WAIT;
    let mut events = Vec::new();
    while Instant::now() < end && !events.iter().any(|e| matches!(e, ControlEvent::Malformed(_))) {
        raw.put(key.as_str(), b"\x00\xffnot json{".to_vec()).wait().unwrap();
        if let Some(e) = recv_within(&mut rx, Duration::from_millis(50)) {
            events.push(e);
        }
    }
    // A valid-JSON message of a newer wire version is also refused as an error event.
    raw.put(key.as_str(), br#"{"v":9,"session_id":"s4","operator":"x","seq":1,"command":"pause"}"#.to_vec())
        .wait()
        .unwrap();
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        if let Some(e) = recv_within(&mut rx, Duration::from_millis(20)) {
            events.push(e);
        }
    }
    let Some(ControlEvent::Malformed(err)) = events.first() else { panic!("expected a malformed event: {events:?}") };
    assert!(err.to_string().contains(&key), "{err}");
    assert!(
        events.iter().any(|e| matches!(e, ControlEvent::Malformed(DecodeError::Version { found: 9, .. }))),
        "{events:?}"
    );
    assert!(commands_of(&events).is_empty(), "{events:?}");
    assert!(ctrl.stats().malformed >= 2);
    drop(raw);
    ctrl.close();
}

#[test]
fn duplicate_and_replayed_seqs_are_ignored() {
    let (c, o) = pair_configs();
    let mut ctrl = ControllerBus::open(&c, "s5").unwrap();
    let mut rx = ctrl.commands().unwrap();
    let raw = raw_peer(&o);
    let key = ctrl.keys().control.clone();
    let msg = |seq: u64, command| {
        encode(&ControlMessage { v: WIRE_VERSION, session_id: "s5".into(), operator: "ben".into(), seq, command })
            .unwrap()
    };
    // Re-send seq 100 until it is delivered (the link may still be coming up).
    let events = Mutex::new(Vec::new());
    let end = Instant::now() + WAIT;
    let delivered = loop {
        raw.put(key.as_str(), msg(100, OperatorCommand::Pause)).wait().unwrap();
        if let Some(e) = recv_within(&mut rx, Duration::from_millis(50)) {
            let is_cmd = matches!(e, ControlEvent::Command(_));
            events.lock().unwrap().push(e);
            if is_cmd {
                break true;
            }
        }
        if Instant::now() > end {
            break false;
        }
    };
    assert!(delivered, "seq 100 never delivered: {:?}", events.lock().unwrap());
    // Same seq again, an older seq, then a newer one as a marker that all have been processed.
    raw.put(key.as_str(), msg(100, OperatorCommand::Pause)).wait().unwrap();
    raw.put(key.as_str(), msg(99, OperatorCommand::Resume)).wait().unwrap();
    raw.put(key.as_str(), msg(101, OperatorCommand::Abort)).wait().unwrap();
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        let Some(e) = recv_within(&mut rx, Duration::from_millis(20)) else { continue };
        let marker = matches!(&e, ControlEvent::Command(c) if c.id.seq == 101);
        events.lock().unwrap().push(e);
        if marker {
            break;
        }
    }
    let events = events.into_inner().unwrap();
    let seqs: Vec<u64> = commands_of(&events).iter().map(|c| c.id.seq).collect();
    assert_eq!(seqs, vec![100, 101], "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e, ControlEvent::Ignored { verdict: SeqVerdict::Replayed, .. })),
        "{events:?}"
    );
    assert!(ctrl.stats().duplicates >= 2, "{:?}", ctrl.stats());
    drop(raw);
    ctrl.close();
}

#[test]
fn no_controller_means_a_clear_timeout() {
    let port = free_port();
    let o = BusConfig { ack_timeout_s: 0.4, ..BusConfig::connecting(format!("tcp/127.0.0.1:{port}")) };
    let op = OperatorBus::open(&o, "s6", "ana").unwrap();
    let t0 = Instant::now();
    let err = op.send(OperatorCommand::Pause).unwrap_err();
    assert!(matches!(err, BusError::AckTimeout { .. }), "{err}");
    assert!(err.to_string().contains("s6") && err.to_string().contains("pause"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    op.close();
}

#[test]
fn telemetry_never_blocks_and_counts_drops() {
    // Nobody listens and the worker drains at zenoh's pace: a burst far above the queue must
    // return at once, with the overflow counted.
    let port = free_port();
    let c = BusConfig { telemetry_queue: 4, ..BusConfig::listening(format!("tcp/127.0.0.1:{port}")) };
    let ctrl = ControllerBus::open(&c, "s7").unwrap();
    let t0 = Instant::now();
    let accepted = (0..10_000).filter(|i| ctrl.publish_telemetry(&telemetry(f64::from(*i)))).count();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let stats = ctrl.stats();
    assert!(accepted < 10_000 && stats.telemetry_dropped >= 1, "{accepted} {stats:?}");
    ctrl.close();
}

#[test]
fn usable_from_inside_a_current_thread_runtime() {
    // The executor's situation: a current-thread runtime, where zenoh itself would panic.
    let (c, o) = pair_configs();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut ctrl = ControllerBus::open(&c, "s8").unwrap();
        let mut rx = ctrl.commands().unwrap();
        let op = OperatorBus::open(&o, "s8", "ana").unwrap();
        let send = op.send_async(OperatorCommand::EmergencyStop);
        let serve = async {
            loop {
                ctrl.publish_telemetry(&telemetry(0.0));
                if let Some(ControlEvent::Command(cmd)) = rx.recv().await {
                    return ctrl.decide(&cmd, SessionState::Running).unwrap();
                }
            }
        };
        let (sent, decided) = tokio::join!(send, serve);
        assert_eq!(sent.unwrap(), AckResult::Accepted);
        assert_eq!(decided, AckResult::Accepted);
        // Dropping inside the runtime must not panic or block.
        drop(op);
        drop(ctrl);
    });
}

#[test]
fn acknowledgement_given_just_before_close_still_goes_out() {
    // The executor acknowledges an abort and drops the bus at once: the ack must be flushed.
    let (c, o) = pair_configs();
    let mut ctrl = ControllerBus::open(&c, "s9").unwrap();
    let mut rx = ctrl.commands().unwrap();
    let op = OperatorBus::open(&o, "s9", "ana").unwrap();
    let executor = std::thread::spawn(move || {
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            if let Some(ControlEvent::Command(cmd)) = recv_within(&mut rx, Duration::from_millis(50)) {
                let r = ctrl.decide(&cmd, SessionState::Running).unwrap();
                ctrl.close();
                return Some(r);
            }
        }
        None
    });
    let t0 = Instant::now();
    let sent = op.send(OperatorCommand::Abort);
    assert_eq!(executor.join().unwrap(), Some(AckResult::Accepted));
    assert_eq!(sent.unwrap(), AckResult::Accepted);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    op.close();
}
