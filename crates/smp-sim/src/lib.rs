//! Simulated world: synthetic patients and cameras, grbl-compatible controller, skin and healing.
