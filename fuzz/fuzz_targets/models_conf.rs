//! UTF-8 → models.conf parse, byte-preserving render and edits (see
//! `onboard_fuzz::models_conf`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onboard_fuzz::models_conf(data);
});
