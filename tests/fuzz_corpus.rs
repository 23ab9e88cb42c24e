//! Replays every input kept under `fuzz/corpus/<target>/` (what AFL++ found
//! interesting, minimised) through the same harnesses `fuzz/` runs, so a
//! regression the fuzzer once explored fails here, in every test run.

use std::path::Path;

use sage_stream::fuzzing::TARGETS;

#[test]
fn every_kept_fuzz_input_still_passes() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0;
    for (name, harness) in TARGETS {
        let dir = corpus.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {name} at {}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "the {name} corpus is empty");
        replayed += inputs;
    }
    eprintln!("replayed {replayed} fuzz inputs");
}
