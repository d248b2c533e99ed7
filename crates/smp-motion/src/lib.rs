//! Tokio transports and the session executor that streams verified programs.
