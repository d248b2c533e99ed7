//! Sans-I/O G-code: program generation, safety verifier, streaming protocol state machines.
