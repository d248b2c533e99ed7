//! The smp command line.
