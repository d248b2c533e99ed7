//! Property tests of the streamer against random controllers: arbitrary bytes never panic the
//! parser, answers are never lost in garbage, and the receive buffer never overflows.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::response::parse_banner;
use super::streamer::tests::T0;
use super::{parse_response, GrblConfig, GrblEvent, GrblStreamer};

/// A well-formed answer line, or a line of garbage that is not one.
#[derive(Debug, Clone)]
enum RxLine {
    Ok,
    Error(u16),
    Garbage(Vec<u8>),
}

fn rx_line() -> impl Strategy<Value = RxLine> {
    let garbage = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        "<[A-Za-z]{0,6}[|,][A-Za-z]{0,4}:[0-9.,:-]{0,30}([|,][A-Za-z]{0,4}:[0-9.,A-Z-]{0,20}){0,6}>"
            .prop_map(String::into_bytes),
        "\\[[A-Za-z0-9 ]{0,8}:[ -~]{0,30}\\]".prop_map(String::into_bytes),
        "(ALARM|\\$|>)[ -~]{0,30}".prop_map(String::into_bytes),
    ]
    .prop_map(|mut g| {
        g.retain(|b| *b != b'\n');
        g
    })
    .prop_filter("garbage that is an answer or a banner", |g| {
        let t = String::from_utf8_lossy(g);
        let t = t.trim();
        !(t == "ok" || t.starts_with("error:") || parse_banner(t).is_some())
    });
    prop_oneof![Just(RxLine::Ok), (0u16..200).prop_map(RxLine::Error), garbage.prop_map(RxLine::Garbage),]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Arbitrary bytes in arbitrary chunks never panic the parser.
    #[test]
    fn parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000), cut in 1usize..64) {
        let mut s = GrblStreamer::new(GrblConfig::default());
        for chunk in bytes.chunks(cut) {
            s.handle_received(chunk, T0);
        }
        while s.poll_event().is_some() {}
        let _ = parse_response(&String::from_utf8_lossy(&bytes));
    }

    /// Well-formed `ok` / `error:N` lines mixed into garbage (random bytes, mangled status
    /// reports and feedback), delivered in random chunks: each answers its line, in order,
    /// with its code; garbage never answers a line.
    #[test]
    fn answers_are_never_lost_in_garbage(
        lines in prop::collection::vec(rx_line(), 1..60),
        cut in 1usize..40,
        crlf in any::<bool>(),
    ) {
        let answers: Vec<Option<u16>> = lines
            .iter()
            .filter_map(|l| match l {
                RxLine::Ok => Some(None),
                RxLine::Error(c) => Some(Some(*c)),
                RxLine::Garbage(_) => None,
            })
            .collect();
        // A buffer large enough to have every line in flight at once.
        let cfg = GrblConfig { pause_on_error: false, rx_buffer_bytes: 4096, ..GrblConfig::default() };
        let mut s = GrblStreamer::new(cfg);
        for tag in 0..answers.len() as u64 {
            s.queue_line("G0", tag).expect("valid");
        }
        let mut buf = Vec::new();
        s.poll_transmit(T0, &mut buf);
        prop_assert_eq!(s.in_flight(), answers.len());
        let mut stream = Vec::new();
        for l in &lines {
            match l {
                RxLine::Ok => stream.extend_from_slice(b"ok"),
                RxLine::Error(c) => stream.extend_from_slice(format!("error:{c}").as_bytes()),
                RxLine::Garbage(g) => stream.extend_from_slice(g),
            }
            stream.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        for chunk in stream.chunks(cut) {
            s.handle_received(chunk, T0);
        }
        let mut got = Vec::new();
        while let Some(e) = s.poll_event() {
            match e {
                GrblEvent::Accepted { tag } => got.push((tag, None)),
                GrblEvent::Rejected { tag, code } => got.push((tag, Some(code))),
                GrblEvent::UnexpectedOk | GrblEvent::UnexpectedError { .. } | GrblEvent::Reset { .. } => {
                    prop_assert!(false, "garbage answered or reset: {:?}", e)
                }
                _ => {}
            }
        }
        let want: Vec<(u64, Option<u16>)> = answers.iter().enumerate().map(|(i, a)| (i as u64, *a)).collect();
        prop_assert_eq!(got, want);
    }
}

/// A line set to stream, and a way to chunk the controller's replies.
fn lines_strategy() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[GXYZF0-9. ]{1,78}", 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Random line sets, a controller that answers lines at random moments, and replies
    /// delivered in random chunks: the controller's buffer never overflows, the host's
    /// count never exceeds 128 and every tag is answered once, in order.
    #[test]
    fn never_overfills_and_acks_in_order(
        lines in lines_strategy(),
        steps in prop::collection::vec((0usize..4, 1usize..12), 1..400),
        errors in prop::collection::vec(any::<bool>(), 1..60),
    ) {
        let mut s = GrblStreamer::new(GrblConfig { pause_on_error: false, ..GrblConfig::default() });
        for (tag, l) in lines.iter().enumerate() {
            s.queue_line(l, tag as u64).expect("generated lines are valid");
        }
        let mut ctrl_rx: VecDeque<usize> = VecDeque::new();
        let mut ctrl_bytes = 0usize;
        let mut ctrl_answered = 0usize;
        let mut reply: Vec<u8> = Vec::new();
        let mut answered = Vec::new();
        let mut step = steps.iter().cycle();
        let mut buf = Vec::new();
        let mut rounds = 0;
        while s.pending() > 0 {
            rounds += 1;
            prop_assert!(rounds < 100_000, "stalled with {} pending", s.pending());
            buf.clear();
            s.poll_transmit(T0, &mut buf);
            prop_assert!(s.in_flight_bytes() <= 128);
            for l in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                ctrl_rx.push_back(l.len() + 1);
                ctrl_bytes += l.len() + 1;
            }
            prop_assert!(ctrl_bytes <= 128, "controller rx buffer overflow: {ctrl_bytes}");
            prop_assert!(s.in_flight_bytes() >= ctrl_bytes);
            let (process, chunk_len) = *step.next().unwrap_or(&(1, 1));
            // The controller answers up to `process` lines (at least one when idle).
            let n = if reply.is_empty() { process.max(1) } else { process };
            for _ in 0..n {
                let Some(len) = ctrl_rx.pop_front() else { break };
                ctrl_bytes -= len;
                let err = errors[ctrl_answered % errors.len()];
                reply.extend_from_slice(if err { b"error:2\r\n" } else { b"ok\r\n" });
                ctrl_answered += 1;
            }
            let chunk: Vec<u8> = reply.drain(..chunk_len.min(reply.len())).collect();
            s.handle_received(&chunk, T0);
            while let Some(e) = s.poll_event() {
                match e {
                    GrblEvent::Accepted { tag } | GrblEvent::Rejected { tag, .. } => answered.push(tag),
                    GrblEvent::Sent { .. } => {}
                    other => prop_assert!(false, "unexpected event {other:?}"),
                }
            }
        }
        prop_assert_eq!(answered, (0..lines.len() as u64).collect::<Vec<_>>());
    }
}
