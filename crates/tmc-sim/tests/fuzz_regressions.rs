//! Replays the committed fuzz regressions (`fuzz/regressions/<target>/*`) through the fuzz target
//! bodies in `tmc_sim::fuzzing`, on stable, as part of `cargo test`.
//!
//! Each file is one input that once crashed a target (now fixed) or that exercises a tricky
//! path; every one must run through its target without a panic.

use std::{
    fs,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
};

use tmc_sim::fuzzing;

fn regressions_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions").join(target)
}

/// Runs `body` on every file of `fuzz/regressions/<target>/`, reporting every failing file.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = regressions_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no regression inputs", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let data = fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failures.push(file.display().to_string());
        }
    }
    assert!(failures.is_empty(), "{target}: {} of {} inputs failed: {failures:?}", failures.len(), files.len());
}

#[test]
fn quantity_regressions() {
    replay("quantity", fuzzing::quantity);
}

#[test]
fn scenario_regressions() {
    replay("scenario", fuzzing::scenario);
}

#[test]
fn solve_regressions() {
    replay("solve", fuzzing::solve);
}

/// The example scenarios are the scenario target's seeds; they must pass it too.
#[test]
fn example_scenarios_pass_the_scenario_target() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut count = 0;
    for entry in fs::read_dir(&examples).unwrap_or_else(|e| panic!("cannot read {}: {e}", examples.display())) {
        let file = entry.unwrap_or_else(|e| panic!("{e}")).path().join("scenario.yaml");
        if file.is_file() {
            let text = fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            fuzzing::scenario(&text);
            count += 1;
        }
    }
    assert!(count > 0, "no example scenarios found under {}", examples.display());
}

/// A short deterministic sweep of the solve target on stable: pseudo-random bytes, decoded into
/// inputs covering every policy field, each solved and checked against the plan invariants.
#[test]
fn solve_target_holds_on_a_deterministic_sweep() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut valid = 0;
    for _ in 0..300 {
        let len = (next() % 400) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if tmc_core::validate(&fuzzing::decode_input(&data)).is_ok() {
            valid += 1;
        }
        fuzzing::solve(&data);
    }
    assert!(valid > 150, "the decoder should make mostly valid inputs, made {valid}/300");
}
