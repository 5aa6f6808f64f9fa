//! Deterministic synthetic scenarios (owned by the bench work).
