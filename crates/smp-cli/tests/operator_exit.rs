//! `smp operator` as the operator meets it, against a controller on a real zenoh session on
//! loopback: an accepted command exits 0, a refused one 3 (a mistyped session id too, answered
//! at once with the session that runs), one nobody answers 4, each with a line saying which
//! (the operator must know whether the arm obeyed).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use smp_bus::{BusConfig, ControlEvent, ControllerBus, SessionState};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

fn operator(action: &str, session_id: &str, endpoint: &str, timeout_s: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smp"))
        .args(["operator", action, "--session-id", session_id, "--connect", endpoint, "--rig", "chair-x"])
        .args(["--operator", "ana", "--timeout", timeout_s])
        .output()
        .expect("smp runs")
}

#[test]
fn accepted_refused_and_unanswered_commands_have_their_own_exit_status() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let cfg = BusConfig { rig: "chair-x".into(), ..BusConfig::listening(endpoint.clone()) };
    let mut ctrl = ControllerBus::open(&cfg, "chair-session").expect("controller bus");
    let mut rx = ctrl.commands().expect("commands");
    let stop = AtomicBool::new(false);
    let (accepted, refused, unanswered) = std::thread::scope(|s| {
        let (ctrl, stop) = (&ctrl, &stop);
        s.spawn(move || {
            // The session runs: the bus's rules accept a pause and refuse a resume.
            while !stop.load(Ordering::Relaxed) {
                match rx.try_recv() {
                    Ok(ControlEvent::Command(c)) => {
                        ctrl.decide(&c, SessionState::Running).expect("ack");
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let accepted = operator("pause", "chair-session", &endpoint, "8");
        let refused = operator("resume", "chair-session", &endpoint, "8");
        // A mistyped session id is answered at once, naming the session that runs.
        let mistyped = operator("pause", "chair-sesion", &endpoint, "8");
        stop.store(true, Ordering::Relaxed);
        (accepted, refused, mistyped)
    });
    ctrl.close();
    let mistyped = unanswered;
    // The controller is gone: nobody answers.
    let unanswered = operator("pause", "chair-session", &endpoint, "1");
    let text = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));
    assert!(text(&accepted).contains("accepted"), "{}", text(&accepted));
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(text(&refused).contains("refused"), "{}", text(&refused));
    assert_eq!(mistyped.status.code(), Some(3), "{}", text(&mistyped));
    assert!(text(&mistyped).contains("the running session is chair-session"), "{}", text(&mistyped));
    assert_eq!(unanswered.status.code(), Some(4), "{}", text(&unanswered));
    assert!(text(&unanswered).contains("may not have obeyed"), "{}", text(&unanswered));
}
