//! A seeded mutation fuzzer over the checkpoint readers: small real safetensors files, PyTorch
//! zips, their pickles and shard indexes, bit-flipped, truncated, spliced. Every mutated input
//! must give a reader or an error naming the file: no panic, no hang.
//!
//! `cargo test --test integration fuzz::` runs it for a few seconds; `LAWA_FUZZ_SECONDS=600
//! cargo test --test integration fuzz:: -- --nocapture` is the long run recorded in RELIABILITY.md (`LAWA_FUZZ_SEED`
//! picks another sequence).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lawa::checkpoint::{pickle, WeightsReader};

fn fixture(rel: &str) -> PathBuf {
    crate::support::fixture("checkpoints").join(rel)
}

/// xorshift64*: small, seeded, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes a parser cares about: JSON and pickle structure, sign and size boundaries.
const INTERESTING: &[u8] = b"\x00\xff\x7f\x80\x01\"{}[]:,.-0123456789e\n\\\x1bKX}q(";

/// One to eight mutations of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        if b.is_empty() {
            b.push(rng.next() as u8);
        }
        let at = rng.below(b.len());
        match rng.below(7) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => b.truncate(at),
            3 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, bytes);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                b.drain(at..end);
            }
            5 => {
                // A chunk repeated: duplicated keys, opcodes, records.
                let end = (at + 1 + rng.below(64)).min(b.len());
                let chunk = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, chunk);
            }
            _ => {
                // A little-endian u64 at a random place set to a boundary value.
                let v: u64 = [0, 1, u64::MAX, i64::MAX as u64, 1 << 32, 1 << 63][rng.below(6)];
                let end = (at + 8).min(b.len());
                let n = end - at;
                b[at..end].copy_from_slice(&v.to_le_bytes()[..n]);
            }
        }
    }
    b
}

/// What one case exercises.
#[derive(Clone, Copy, Debug)]
enum Target {
    Safetensors,
    TorchZip,
    Pickle,
    Index,
}

/// Opens what was written and reads every tensor; `Err` is the error message.
fn exercise(target: Target, dir: &Path, data: &[u8]) -> Result<(), String> {
    match target {
        Target::Pickle => pickle::parse(data).map(|_| ()).map_err(|e| e.to_string()),
        _ => {
            let r = WeightsReader::open(dir).map_err(|e| e.to_string())?;
            for t in r.tensors() {
                r.bytes(&t.name).map_err(|e| e.to_string())?;
                r.tensor(&t.name, &candle_core::Device::Cpu)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

/// Where each target's mutated file goes, and which file it is.
fn setup(root: &Path) -> Vec<(Target, PathBuf, PathBuf, Vec<u8>)> {
    let zip_bytes = fs::read(fixture("bin_f16/step100/pytorch_model.bin")).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&zip_bytes)).unwrap();
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(
        &mut zip.by_name("pytorch_model/data.pkl").unwrap(),
        &mut pkl,
    )
    .unwrap();
    let sharded = root.join("sharded");
    fs::create_dir_all(&sharded).unwrap();
    for f in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        fs::copy(fixture("st_f16_sharded/step100").join(f), sharded.join(f)).unwrap();
    }
    let st = root.join("st");
    let bin = root.join("bin");
    for d in [&st, &bin] {
        fs::create_dir_all(d).unwrap();
    }
    vec![
        (
            Target::Safetensors,
            st.clone(),
            st.join("model.safetensors"),
            fs::read(fixture("st_f16/step100/model.safetensors")).unwrap(),
        ),
        (
            Target::TorchZip,
            bin.clone(),
            bin.join("pytorch_model.bin"),
            zip_bytes.clone(),
        ),
        (
            Target::Pickle,
            root.to_path_buf(),
            root.join("data.pkl"),
            pkl,
        ),
        (
            Target::Index,
            sharded.clone(),
            sharded.join("model.safetensors.index.json"),
            fs::read(fixture(
                "st_f16_sharded/step100/model.safetensors.index.json",
            ))
            .unwrap(),
        ),
    ]
}

#[test]
fn mutated_checkpoints_give_errors_not_panics() {
    let seconds: f64 = std::env::var("LAWA_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let seed: u64 = std::env::var("LAWA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let root = tempfile::tempdir().unwrap();
    let targets = setup(root.path());
    // The unmutated seeds open cleanly: a fuzzer over inputs that never parse tests nothing.
    for (t, dir, file, data) in &targets {
        fs::write(file, data).unwrap();
        exercise(*t, dir, data).unwrap_or_else(|e| panic!("{t:?} seed: {e}"));
    }
    let mut rng = Rng(seed.max(1));
    let t0 = Instant::now();
    let (mut cases, mut opened, mut slowest) = (0u64, 0u64, Duration::ZERO);
    while t0.elapsed().as_secs_f64() < seconds {
        let (target, dir, file, seed_bytes) = &targets[cases as usize % targets.len()];
        let data = mutate(&mut rng, seed_bytes);
        fs::write(file, &data).unwrap();
        let (tx, rx) = mpsc::channel();
        let (target, dir2, data2) = (*target, dir.clone(), data.clone());
        let started = Instant::now();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| exercise(target, &dir2, &data2));
            let _ = tx.send(r);
        });
        let keep = root.path().join(format!("case-{cases}-{target:?}"));
        let result = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(r) => r,
            Err(_) => {
                fs::write(&keep, &data).unwrap();
                panic!(
                    "case {cases} (seed {seed}, {target:?}) hangs; input kept at {}",
                    keep.display()
                );
            }
        };
        slowest = slowest.max(started.elapsed());
        match result {
            Err(_) => {
                let kept = std::env::temp_dir().join(format!("lawa-fuzz-panic-{seed}-{cases}"));
                fs::write(&kept, &data).unwrap();
                panic!(
                    "case {cases} (seed {seed}, {target:?}) panics; input kept at {}",
                    kept.display()
                );
            }
            Ok(Ok(())) => opened += 1,
            Ok(Err(msg)) => {
                assert!(!msg.trim().is_empty(), "case {cases}: empty error");
                // The CLI prints errors escaped: one line whatever the file held.
                assert_eq!(
                    lawa::display::escape(&msg).lines().count(),
                    1,
                    "case {cases}: {msg:?}"
                );
                if !matches!(target, Target::Pickle) {
                    assert!(
                        msg.contains(dir.to_str().unwrap()),
                        "case {cases} ({target:?}): the error names no file: {msg}"
                    );
                }
            }
        }
        cases += 1;
    }
    println!(
        "fuzz: seed {seed}, {cases} mutated files in {:.0} s ({opened} still opened and read), 0 panics, 0 hangs, slowest case {:.1} ms",
        t0.elapsed().as_secs_f64(),
        slowest.as_secs_f64() * 1e3
    );
    assert!(cases >= 4, "too few cases");
}
