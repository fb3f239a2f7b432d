//! Replays the reply classifier's fuzz check (`fuzz/checks.rs`, the fuzz target's own
//! code) on every committed fuzz input (`test_data/fuzzed/classify_reply/*`, crashes the
//! target found, if any) and on a fixed spread of generated inputs: every scan type and
//! mode with truncations and bit flips of valid replies. `cargo xtask fuzz` runs the
//! target itself (docs/fuzzing.md).

use std::path::Path;

#[allow(dead_code, reason = "the module is shared with the fuzz target")]
#[path = "../fuzz/checks.rs"]
mod checks;

#[test]
fn committed_fuzz_inputs_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/fuzzed/classify_reply");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for e in entries {
        let path = e.expect("a directory entry").path();
        let data = std::fs::read(&path).expect("a readable input");
        checks::classify_reply(&data);
    }
}

#[test]
fn generated_inputs_pass() {
    // A small xorshift keeps the spread fixed from run to run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut runs = 0;
    for kind in 0..4u8 {
        for sel in 0..16u8 {
            checks::classify_reply(&[kind, sel]);
            for _ in 0..8 {
                let cut = (next() % 96) as u8;
                let mut data = vec![kind, sel, cut];
                for _ in 0..(next() % 6) {
                    data.extend_from_slice(&[(next() % 96) as u8, (next() % 255 + 1) as u8]);
                }
                checks::classify_reply(&data);
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 4 * 16 * 8);
}
