//! Fuzz target `solve`: see `tmc_sim::fuzzing::solve`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tmc_sim::fuzzing::solve(data));
