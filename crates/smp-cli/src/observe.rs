//! Observers of a session for the terminal and the recording: a progress bar, and the rerun
//! recording of each dot as it is done (through smp-viz, which never blocks the caller).

use smp_session::{Observer, SessionEvent};

/// An indicatif bar of the dots done, with the time left.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    /// A bar over `total` dots; hidden unless `enabled`.
    pub fn new(enabled: bool, total: u64) -> ProgressBar {
        if !enabled {
            return ProgressBar { bar: indicatif::ProgressBar::hidden() };
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "  stream    [{elapsed_precise}] {wide_bar} {pos}/{len} dots ({eta} left)",
        ) {
            bar.set_style(style);
        }
        ProgressBar { bar }
    }
}

impl Observer for ProgressBar {
    fn on_event(&mut self, event: &SessionEvent) {
        if let SessionEvent::Progress { done, .. } = event {
            self.bar.set_position(*done as u64);
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Logs each dot's state on the recording's `session_time` timeline (the machine's clock).
pub struct Recording<'a> {
    viz: &'a smp_viz::Recorder,
}

impl<'a> Recording<'a> {
    pub fn new(viz: &'a smp_viz::Recorder) -> Recording<'a> {
        Recording { viz }
    }
}

impl Observer for Recording<'_> {
    fn on_event(&mut self, event: &SessionEvent) {
        if let SessionEvent::Dot { id, state, position_head_mm, t_s } = event {
            self.viz.log_dot_state(*t_s, *id, *state, *position_head_mm);
        }
    }
}
