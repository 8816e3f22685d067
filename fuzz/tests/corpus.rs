//! The fuzzing smoke pass `scripts/test` runs: every target over its hand-written seeds
//! (`fuzz/seeds/<target>/`), its stored corpus (`fuzz/corpus/<target>/`, a sample of the
//! inputs libFuzzer kept for new coverage in the last `scripts/fuzz` run), every regression input (`fuzz/regressions/<target>/`, each a crash once found
//! and fixed), and a fixed set of pseudo-random inputs. A target that panics fails the test
//! with the input's file named, so a regression is reproduced with
//! `scripts/fuzz --reproduce fuzz/regressions/<target>/<file>`.

use std::path::{Path, PathBuf};

/// Pseudo-random inputs per target (fixed seed, so every run is the same), on top of the
/// stored ones: cheap coverage of the parsers' error paths even before a corpus exists.
const RANDOM_INPUTS: usize = 2_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn stored_inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["seeds", "corpus", "regressions"] {
        let dir = fuzz_dir().join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        files.extend(entries.map(|entry| entry.expect("corpus entry").path()));
    }
    files.sort();
    files
}

fn run_one(target: &str, what: &str, data: &[u8]) {
    let outcome = std::panic::catch_unwind(|| edge_fuzz::run(target, data));
    match outcome {
        Ok(Some(())) => {}
        Ok(None) => panic!("`{target}` is not a target of edge_fuzz::run"),
        Err(_) => panic!("target `{target}` failed on {what}"),
    }
}

#[test]
fn every_target_passes_its_corpus_and_regressions() {
    for target in edge_fuzz::TARGETS {
        for path in stored_inputs(target) {
            let data = std::fs::read(&path).expect("reading a corpus file");
            run_one(target, &path.display().to_string(), &data);
        }
    }
}

#[test]
fn every_target_passes_pseudo_random_inputs() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for target in edge_fuzz::TARGETS {
        for index in 0..RANDOM_INPUTS {
            let len = rng.usize(0..512);
            let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            run_one(target, &format!("random input #{index} {data:?}"), &data);
        }
    }
}

#[test]
fn every_target_has_a_binary_seeds_and_a_corpus() {
    for target in edge_fuzz::TARGETS {
        let binary = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(binary.is_file(), "{} is missing", binary.display());
        for dir in ["seeds", "corpus"] {
            let inputs = fuzz_dir().join(dir).join(target);
            assert!(
                std::fs::read_dir(&inputs).is_ok_and(|mut entries| entries.next().is_some()),
                "{} is missing or empty (the corpus is made by scripts/fuzz {target})",
                inputs.display()
            );
        }
    }
}
