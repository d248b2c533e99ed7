//! End-to-end scenarios live in `tests/*.rs`; this library is empty on purpose.
