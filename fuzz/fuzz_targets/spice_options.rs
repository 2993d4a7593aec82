//! The `--spice` option text (a user's command line, and what tools and
//! scripts build from untrusted names): any text parses to a config or a
//! one-line error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron::spice::SpiceConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = SpiceConfig::parse_with_env(text, None) {
        assert!(!e.contains('\n'), "a multi-line error: {e}");
    }
});
