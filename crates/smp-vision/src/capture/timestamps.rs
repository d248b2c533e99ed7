//! The timestamp sidecar of an image sequence: `timestamps.txt` next to the frames.
//!
//! Format: plain text, one time in seconds a line (since the recording's start, or any
//! clock the cameras of one recording share), line k for the k-th frame OpenCV reads (so
//! for the lowest-numbered file first, whether the numbering starts at 0 or 1). Times are
//! finite, non-negative and strictly increasing. Blank lines and lines starting with `#` are
//! ignored, so a header may say where the times came from. Plain text rather than TOML so
//! that any camera tool can write it (`ls`-order frame times from a camera SDK, one a line).

use std::path::Path;

use super::error::CaptureError;

/// The sidecar's file name, looked for in the image sequence's directory.
pub const TIMESTAMPS_FILE: &str = "timestamps.txt";

/// Parses the sidecar's text (`path` names it in errors) into per-frame seconds.
pub fn parse_timestamps(text: &str, path: &Path) -> Result<Vec<f64>, CaptureError> {
    let mut out: Vec<f64> = Vec::new();
    for (k, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: String| CaptureError::TimestampFile { path: path.to_path_buf(), line: k + 1, problem };
        let t: f64 = line.parse().map_err(|_| bad(format!("`{line}` is not a number of seconds")))?;
        if !(t.is_finite() && t >= 0.0) {
            return Err(bad(format!("{line} s is not a finite, non-negative time")));
        }
        if let Some(&prev) = out.last() {
            if t <= prev {
                return Err(bad(format!("{t} s does not come after the previous frame's {prev} s")));
            }
        }
        out.push(t);
    }
    if out.is_empty() {
        return Err(CaptureError::TimestampFile {
            path: path.to_path_buf(),
            line: text.lines().count(),
            problem: "the file lists no time".into(),
        });
    }
    Ok(out)
}

/// The sidecar's text for `times_s` (microsecond resolution), with a header comment.
pub fn format_timestamps(times_s: &[f64]) -> String {
    let mut s = String::from("# seconds since the recording's start, one line per frame in frame order\n");
    for t in times_s {
        s.push_str(&timestamp_line(*t));
    }
    s
}

/// One frame's line of the sidecar.
pub(crate) fn timestamp_line(time_s: f64) -> String {
    format!("{time_s:.6}\n")
}

/// Refuses a frame time that is not finite and non-negative, or not after `previous_s`.
pub(crate) fn check_time(previous_s: Option<f64>, time_s: f64, input: &str, index: u64) -> Result<(), CaptureError> {
    if !(time_s.is_finite() && time_s >= 0.0) {
        return Err(CaptureError::BadTime { input: input.to_string(), index, time_s });
    }
    match previous_s {
        Some(previous_s) if time_s <= previous_s => {
            Err(CaptureError::OutOfOrder { input: input.to_string(), index, time_s, previous_s })
        }
        _ => Ok(()),
    }
}

/// `time_s` as the sidecar keeps it (to the microsecond).
pub(crate) fn to_microseconds(time_s: f64) -> f64 {
    (time_s * 1.0e6).round() / 1.0e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<f64>, CaptureError> {
        parse_timestamps(text, Path::new("rec/timestamps.txt"))
    }

    fn line_of(e: CaptureError) -> (usize, String) {
        match e {
            CaptureError::TimestampFile { line, problem, .. } => (line, problem),
            other => panic!("not a timestamp file error: {other:?}"),
        }
    }

    #[test]
    fn reads_times_skipping_comments_and_blank_lines() {
        let t = parse("# from the trigger box\n0\n\n 0.1 \r\n0.25\n# end\n1e0\n").expect("valid");
        assert_eq!(t, vec![0.0, 0.1, 0.25, 1.0]);
    }

    #[test]
    fn formatted_times_read_back() {
        let times = [0.0, 0.033333, 0.1, 12.5];
        assert_eq!(parse(&format_timestamps(&times)).expect("own format"), times.to_vec());
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        let (line, p) = line_of(parse("0.0\n0.1\nabc\n").expect_err("not a number"));
        assert_eq!(line, 3);
        assert!(p.contains("`abc`"), "{p}");
        let (line, p) = line_of(parse("0.0\n0.2\n0.1\n").expect_err("goes back"));
        assert_eq!(line, 3);
        assert!(p.contains("does not come after"), "{p}");
        let (line, _) = line_of(parse("0.0\n0.0\n").expect_err("repeated"));
        assert_eq!(line, 2);
        let (line, _) = line_of(parse("-0.1\n").expect_err("negative"));
        assert_eq!(line, 1);
        let (line, _) = line_of(parse("0\nNaN\n").expect_err("NaN"));
        assert_eq!(line, 2);
        let (line, _) = line_of(parse("0\ninf\n").expect_err("infinite"));
        assert_eq!(line, 2);
        let (_, p) = line_of(parse("0.1 0.2\n").expect_err("two on a line"));
        assert!(p.contains("not a number"), "{p}");
        let (_, p) = line_of(parse("# only a header\n\n").expect_err("empty"));
        assert!(p.contains("no time"), "{p}");
    }

    #[test]
    fn the_message_names_the_file_and_the_format() {
        let e = parse("x\n").expect_err("bad").to_string();
        assert!(e.contains("rec/timestamps.txt") && e.contains("line 1") && e.contains("one time in seconds"), "{e}");
    }
}
