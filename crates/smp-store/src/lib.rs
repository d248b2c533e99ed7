//! SQLite journal of patients, sessions, dots and commands.
