//! Every input under `fuzz/regressions/<target>/` (seed inputs and any crash a fuzz run ever
//! found) goes through its harness on every test run: none may panic.

use std::path::Path;

fn run(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        harness(&data);
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}

#[test]
fn sync_stream() {
    run("sync_stream", toki_sync::fuzzing::sync_stream);
}

#[test]
fn batch_raw() {
    run("batch_raw", toki_sync::fuzzing::batch_raw);
}

#[test]
fn batch_zstd() {
    run("batch_zstd", toki_sync::fuzzing::batch_zstd);
}

#[test]
fn http_request() {
    run("http_request", toki_sync::fuzzing::http_request);
}

/// Every endpoint the HTTP harness can pick has at least one kept input selecting it, so each
/// one is exercised on every test run and a fuzz run starts from a well-formed body for it.
#[test]
fn http_request_has_a_seed_for_every_endpoint() {
    let templates = toki_sync::fuzzing::http_request_templates();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/http_request");
    let mut covered = vec![false; templates.len()];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        if let Some(&selector) = data.first().filter(|s| **s & 0x80 == 0) {
            covered[usize::from(selector) % templates.len()] = true;
        }
    }
    let missing: Vec<_> = templates.iter().zip(&covered).filter(|(_, c)| !**c).map(|(t, _)| t).collect();
    assert!(missing.is_empty(), "no input in {} for {missing:?}", dir.display());
}
