//! Errors at the CLI edge: one clear line naming the thing, a hint, and an exit status.

use std::fmt;

/// Exit status for bad input (a missing or malformed file, a bad flag value).
pub const EXIT_INPUT: i32 = 2;
/// Exit status for a failure while running (a fault, a verifier rejection, a session that
/// did not execute every dot, a failed check `smp demo` printed).
pub const EXIT_FAILURE: i32 = 1;
/// `smp operator`: the controller answered and refused the command.
pub const EXIT_REFUSED: i32 = 3;
/// `smp operator`: no answer from the controller (the arm may not have obeyed).
pub const EXIT_NO_ANSWER: i32 = 4;

/// The exit statuses, as `smp --help` lists them.
pub const EXIT_STATUSES: &str = "Exit status: 0 success; 1 failure while running (a fault, a verifier \
rejection, a session that did not execute every dot, a failed check in `smp demo`); 2 bad input (a \
missing or malformed file, a bad flag value); 3 `smp operator`: the controller refused the command; \
4 `smp operator`: no answer from the controller.";

/// A failure the CLI reports as one line (plus an optional hint line).
#[derive(Debug)]
pub struct CliError {
    pub exit_code: i32,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    /// Bad input: the user can fix it by changing a file or a flag.
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError { exit_code: EXIT_INPUT, message: message.into(), hint: Some(hint.into()) }
    }

    /// A stage failed while running.
    pub fn failure(message: impl Into<String>) -> Self {
        CliError { exit_code: EXIT_FAILURE, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for CliError {}

/// Turns a stage's error into a failure line that names the stage.
pub fn stage<E: fmt::Display>(stage: &'static str) -> impl FnOnce(E) -> CliError {
    move |e| CliError::failure(format!("{stage}: {e}"))
}
