//! Faults and hostile inputs through the real `lawa` binary (issue 16): signals at any moment
//! and any number of times leave no temp dir, a killed run's temp dir is removed by the next
//! one, configs and side files of the window, file-derived text escaped, closed stdout, and the
//! messages that used to mislead. RELIABILITY.md lists every case and its expected message.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, copy_dir, fixture, lawa, s, Out, LAWA};

/// A failure: non-zero exit, exactly one `error:` line on stderr; returns it.
fn one_line_error(o: &Out) -> String {
    assert_ne!(o.code, Some(0), "should fail\n{}", o.stdout);
    let err = o.stderr.trim_end();
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "not one error line: {err:?}");
    assert_eq!(err.lines().last(), Some(errors[0]), "{err:?}");
    assert!(!err.contains('\x1b'), "raw escape reached stderr: {err:?}");
    errors[0].to_string()
}

fn run_copy(rel: &str) -> (tempfile::TempDir, PathBuf) {
    support::run_copy(&format!("checkpoints/{rel}"))
}

/// Our temp dirs in `dir`.
fn temp_dirs(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".lawa-tmp-"))
        .collect()
}

/// A safetensors file of `n` f32 tensors of 16 values each, every value `v`.
fn many_tensors(path: &Path, n: usize, v: f32) {
    let mut header = serde_json::Map::new();
    for i in 0..n {
        header.insert(
            format!("t{i:06}"),
            serde_json::json!({"dtype": "F32", "shape": [16], "data_offsets": [i * 64, i * 64 + 64]}),
        );
    }
    let h = serde_json::Value::Object(header).to_string();
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(h.as_bytes());
    for _ in 0..n * 16 {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A run of three checkpoints big enough in tensor count that an average takes seconds.
fn slow_run(root: &Path) -> PathBuf {
    let run = root.join("run");
    for (step, v) in [(1, 1.0), (2, 2.0), (3, 3.0)] {
        many_tensors(
            &run.join(format!("step{step}/model.safetensors")),
            60_000,
            v,
        );
    }
    run
}

fn spawn_average(run: &Path, out: &Path) -> Child {
    Command::new(LAWA)
        .args(["average", s(run), "--steps", "1,2,3", "--out", s(out)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the average has its temp dir beside `out`.
fn wait_for_temp(child: &mut Child, parent: &Path) {
    let t0 = Instant::now();
    while temp_dirs(parent).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "exited before writing");
        assert!(t0.elapsed() < Duration::from_secs(60), "no temp dir");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(child: &Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn finish(child: Child) -> Out {
    child.wait_with_output().unwrap().into()
}

/// Every catchable termination signal, once, twice in a row, or two different ones, mid-average:
/// exit 130, one error line naming the signal, no output and no temp dir.
#[test]
fn every_signal_any_number_of_times_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let run = slow_run(t.path());
    let cases: &[&[i32]] = &[
        &[libc::SIGINT],
        &[libc::SIGTERM],
        &[libc::SIGHUP],
        &[libc::SIGQUIT],
        &[libc::SIGINT, libc::SIGINT],
        &[libc::SIGINT, libc::SIGTERM],
        &[libc::SIGHUP, libc::SIGQUIT],
        &[libc::SIGTERM, libc::SIGTERM, libc::SIGTERM],
    ];
    for (k, sigs) in cases.iter().enumerate() {
        let parent = t.path().join(format!("out{k}"));
        fs::create_dir_all(&parent).unwrap();
        let out = parent.join("avg");
        let mut child = spawn_average(&run, &out);
        wait_for_temp(&mut child, &parent);
        for &sig in *sigs {
            kill(&child, sig);
        }
        let o = finish(child);
        assert_eq!(o.code, Some(130), "{sigs:?}: {}", o.stderr);
        let line = one_line_error(&o);
        assert!(line.contains("SIG"), "{sigs:?}: {line}");
        assert!(!out.exists(), "{sigs:?}");
        assert_eq!(temp_dirs(&parent), Vec::<String>::new(), "{sigs:?}");
    }
}

/// A run killed outright leaves its temp dir; the next output written beside it removes it
/// with a note, and `lawa list` never shows it meanwhile.
#[test]
fn a_killed_runs_temp_dir_is_removed_by_the_next_run_and_never_listed() {
    let t = tempfile::tempdir().unwrap();
    let run = slow_run(t.path());
    // The output inside the run folder: where `lawa list` would see a leftover.
    let out = run.join("avg");
    let mut child = spawn_average(&run, &out);
    wait_for_temp(&mut child, &run);
    kill(&child, libc::SIGKILL);
    let o = finish(child);
    assert_eq!(o.code, None);
    let left = temp_dirs(&run);
    assert_eq!(left.len(), 1);

    let o = lawa(&["list", s(&run)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stdout.contains("lawa-tmp"), "{}", o.stdout);
    assert!(!o.stdout.contains("no step in its name"), "{}", o.stdout);

    let (_t2, small) = run_copy("st_f16");
    let o = lawa(&[
        "average",
        s(&small),
        "--steps",
        "100,200",
        "--out",
        s(&run.join("avg2")),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let notes: Vec<&str> = o.stderr.lines().filter(|l| l.contains(&left[0])).collect();
    assert_eq!(notes.len(), 1, "{}", o.stderr);
    assert!(notes[0].starts_with("note: removed") && notes[0].contains("is gone"));
    assert!(temp_dirs(&run).is_empty());
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let o = Command::new(LAWA)
        .args(["list", s(&fixture("checkpoints/st_f16"))])
        .stdout(w)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.is_empty(), "{err}");
    assert_ne!(o.status.code(), Some(101));
}

fn avg(run: &Path, steps: &str, out: &Path) -> Out {
    lawa(&["average", s(run), "--steps", steps, "--out", s(out)])
}

#[test]
fn the_output_always_has_the_windows_config() {
    // The newest input has none: the output gets the newest one there is, and says so.
    let (t, run) = run_copy("st_f16");
    fs::remove_file(run.join("step400/config.json")).unwrap();
    let out = t.path().join("a");
    let o = avg(&run, "200,400", &out);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(
        fs::read(out.join("config.json")).unwrap(),
        fs::read(run.join("step200/config.json")).unwrap()
    );
    assert!(
        o.stderr.contains("config.json comes from step 200"),
        "{}",
        o.stderr
    );

    // An invalid one is an error naming it, not copied.
    fs::write(run.join("step200/config.json"), "{ not json").unwrap();
    let out = t.path().join("b");
    let e = one_line_error(&avg(&run, "100,200", &out));
    assert!(
        e.contains("step200/config.json") && e.contains("not a JSON object"),
        "{e}"
    );
    assert!(!out.exists());

    // Different architectures: an error naming the field and both files.
    let (t, run) = run_copy("st_f16");
    let c = run.join("step100/config.json");
    let text = fs::read_to_string(&c)
        .unwrap()
        .replace("\"hidden_size\": 8", "\"hidden_size\": 16");
    fs::write(&c, text).unwrap();
    let out = t.path().join("c");
    let e = one_line_error(&avg(&run, "100,400", &out));
    assert!(
        e.contains("hidden_size")
            && e.contains("step100/config.json")
            && e.contains("step400/config.json"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn side_files_are_copied_only_from_inside_the_checkpoint() {
    let (t, run) = run_copy("st_f16");
    let secret = t.path().join("secret.txt");
    fs::write(&secret, "private key").unwrap();
    let tok = run.join("step400/tokenizer.json");
    fs::remove_file(&tok).unwrap();
    std::os::unix::fs::symlink(&secret, &tok).unwrap();
    // A link that stays inside the checkpoint is fine.
    fs::rename(
        run.join("step400/config.json"),
        run.join("step400/real_config.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink("real_config.json", run.join("step400/config.json")).unwrap();
    let out = t.path().join("avg");
    let o = avg(&run, "200,400", &out);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!out.join("tokenizer.json").exists());
    assert!(o.stderr.contains("outside the checkpoint"), "{}", o.stderr);
    assert!(out.join("config.json").is_file());
    for e in fs::read_dir(&out).unwrap() {
        assert_ne!(fs::read(e.unwrap().path()).unwrap(), b"private key");
    }
}

#[test]
fn mixed_dtypes_say_what_the_output_is() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    copy_dir(&fixture("checkpoints/st_f16/step100"), &run.join("step100"));
    copy_dir(
        &fixture("checkpoints/st_bf16/step200"),
        &run.join("step200"),
    );
    let o = avg(&run, "100,200", &t.path().join("avg"));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let note: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("mix dtypes"))
        .collect();
    assert_eq!(note.len(), 1, "{}", o.stderr);
    assert!(
        note[0].contains("step 100 f16")
            && note[0].contains("step 200 bf16")
            && note[0].contains("the output is bf16"),
        "{}",
        note[0]
    );
}

/// A tensor name with a newline and ANSI codes cannot forge a line or clear the screen.
#[test]
fn file_derived_text_is_escaped() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    many_tensors(&run.join("step1/model.safetensors"), 2, 1.0);
    // step2 has one more tensor, with a hostile name.
    let name = "x\nerror: forged\x1b[2J";
    let h = serde_json::json!({
        "t000000": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]},
        "t000001": {"dtype": "F32", "shape": [16], "data_offsets": [64, 128]},
        name: {"dtype": "F32", "shape": [16], "data_offsets": [128, 192]},
    })
    .to_string();
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(&[0u8; 192]);
    fs::create_dir_all(run.join("step2")).unwrap();
    fs::write(run.join("step2/model.safetensors"), bytes).unwrap();
    let e = one_line_error(&avg(&run, "1,2", &t.path().join("avg")));
    assert!(e.contains("x\\nerror: forged\\x1b[2J"), "{e}");

    // A folder name in `lawa list`'s warnings.
    let evil = run.join("model\x1b[31mred");
    fs::create_dir(&evil).unwrap();
    fs::copy(
        run.join("step1/model.safetensors"),
        evil.join("model.safetensors"),
    )
    .unwrap();
    let o = lawa(&["list", s(&run)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stdout.contains('\x1b'), "{:?}", o.stdout);
    assert!(o.stdout.contains("model\\x1b[31mred"), "{}", o.stdout);
}

#[test]
fn messages_name_the_real_problem() {
    // model.safetensors that is a folder, a FIFO, a dangling link.
    for kind in ["dir", "fifo", "dangling"] {
        let (t, run) = run_copy("st_f16");
        let w = run.join("step400/model.safetensors");
        fs::remove_file(&w).unwrap();
        match kind {
            "dir" => fs::create_dir(&w).unwrap(),
            "fifo" => {
                let c = std::ffi::CString::new(s(&w)).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            }
            _ => std::os::unix::fs::symlink(t.path().join("gone"), &w).unwrap(),
        }
        let e = one_line_error(&avg(&run, "200,400", &t.path().join("avg")));
        let want = match kind {
            "dir" => "is a folder, not a weights file",
            "fifo" => "is not a regular file",
            _ => "a symbolic link to nothing",
        };
        assert!(
            e.contains("step400/model.safetensors") && e.contains(want),
            "{kind}: {e}"
        );
    }

    // A shard that is a folder; an index naming a shard that is not there.
    let (t, run) = run_copy("st_f16_sharded");
    let shard = run.join("step400/model-00002-of-00002.safetensors");
    fs::remove_file(&shard).unwrap();
    let e = one_line_error(&avg(&run, "200,400", &t.path().join("avg")));
    assert!(
        e.contains("names the shard model-00002-of-00002.safetensors, which is missing"),
        "{e}"
    );
    fs::create_dir(&shard).unwrap();
    let e = one_line_error(&avg(&run, "200,400", &t.path().join("avg")));
    assert!(
        e.contains("model-00002-of-00002.safetensors: is a folder"),
        "{e}"
    );

    // A dangling-symlink --out is refused before any work.
    let (t, run) = run_copy("st_f16");
    let out = t.path().join("out");
    std::os::unix::fs::symlink(t.path().join("nowhere"), &out).unwrap();
    let e = one_line_error(&avg(&run, "200,400", &out));
    assert!(e.contains("symbolic link to nothing"), "{e}");

    // Argument errors: one line.
    let o = lawa(&["average", s(&run), "--at", "400"]);
    assert_eq!(o.code, Some(2));
    let e = one_line_error(&o);
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.stderr);
    assert!(e.contains("--last") && e.contains("--help"), "{e}");
}

/// A legal output name of 240 bytes works (the temp name beside it is shorter).
#[test]
fn a_long_out_name_works() {
    let (t, run) = run_copy("st_f16");
    let out = t.path().join("a".repeat(240));
    let o = avg(&run, "200,400", &out);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(out.join("model.safetensors").is_file());
}

/// NaN weights make a NaN perplexity: a failure in both modes, not a number with exit 0.
#[test]
fn a_non_finite_eval_result_fails() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    copy_dir(&fixture("gpt_neox/parallel"), &m);
    let w = m.join("model.safetensors");
    let mut bytes = fs::read(&w).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let off = h["gpt_neox.final_layer_norm.bias"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize;
    for i in 0..32 {
        let at = 8 + n + off + 4 * i;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    fs::write(&w, bytes).unwrap();
    let ids: Vec<u8> = (1u16..40).flat_map(|i| i.to_le_bytes()).collect();
    let tokens = t.path().join("t.bin");
    fs::write(&tokens, ids).unwrap();
    for json in [false, true] {
        let mut args = vec!["eval", s(&m), "--tokens", s(&tokens), "--ctx", "8"];
        if json {
            args.push("--json");
        }
        let o = lawa(&args);
        let e = one_line_error(&o);
        assert!(e.contains("NaN") && e.contains(s(&m)), "{e}");
    }
}
