//! Zenoh telemetry out and operator control in.
