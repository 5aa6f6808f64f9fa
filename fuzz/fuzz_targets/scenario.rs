//! Fuzz target `scenario`: see `tmc_sim::fuzzing::scenario`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tmc_sim::fuzzing::scenario(data));
