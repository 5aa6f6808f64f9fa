//! Fuzz target bodies, shared by `fuzz/` and the regression replay tests (owned by the fuzz work).
