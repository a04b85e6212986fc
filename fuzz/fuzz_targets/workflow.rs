//! UTF-8 → YAML parser, schema check and workflow validation, as
//! `onboard validate` does (see `onboard_fuzz::workflow`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onboard_fuzz::workflow(data);
});
