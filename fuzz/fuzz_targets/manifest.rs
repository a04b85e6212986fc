//! UTF-8 → manifest and onboard.yaml parsing and checks (see
//! `onboard_fuzz::manifest`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onboard_fuzz::manifest(data);
});
