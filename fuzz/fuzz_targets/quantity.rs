//! Fuzz target `quantity`: see `tmc_sim::fuzzing::quantity`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tmc_sim::fuzzing::quantity(data));
