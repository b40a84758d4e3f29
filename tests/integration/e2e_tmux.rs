//! End to end: the real `lawa` binary in tmux on a tiny trained trajectory. Moves the cursor,
//! launches an average + eval, waits for the result row on the captured screen, exports, quits,
//! and checks the exported files and that the terminal was given back (main screen, no mouse
//! reporting). `.ci/run` installs tmux; without it (outside CI) the test says so and passes.

use std::process::Command;
use std::time::{Duration, Instant};

use lawa::progress::Reporter;
use lawa::train::{run_demo, DemoConfig};

struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", &self.session];
        a.extend_from_slice(keys);
        self.cmd(&a);
    }
    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", &self.session])
    }
    fn var(&self, name: &str) -> String {
        self.cmd(&["display-message", "-p", "-t", &self.session, name])
            .trim()
            .to_string()
    }
    /// Waits until `pred` holds for the screen; panics with the last screen after `secs`.
    fn wait_for(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if t0.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

/// Decimal numbers (like `3.142`) in a line.
fn decimals(line: &str) -> usize {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|w| w.contains('.') && w.chars().any(|c| c.is_ascii_digit()))
        .count()
}

/// The checkpoint list row of `step` (the left panel), if shown.
fn list_row(screen: &str, step: u64) -> Option<String> {
    let needle = format!(" {step} ");
    screen
        .lines()
        .map(|l| l.chars().take(36).collect::<String>())
        .find(|l| (l.starts_with('│') || l.starts_with('┃')) && l.contains(&needle))
}

#[test]
fn explore_average_eval_export_quit_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (.ci/run installs it)"
        );
        eprintln!("tmux not installed: end-to-end explorer test not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = DemoConfig::tiny();
    run_demo(&cfg, &run, &Reporter::silent()).expect("tiny demo trains");
    let steps: Vec<u64> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_prefix("step")?.parse().ok()
        })
        .collect();
    let mut sorted = steps.clone();
    sorted.sort();
    let target = sorted[sorted.len() - 2];
    // The first checkpoint is cut short: its eval fails, and the explorer must carry on.
    let broken = sorted[0];
    assert!(
        sorted.len() > 6,
        "the window at {target} leaves {broken} out"
    );
    for e in std::fs::read_dir(run.join(format!("step{broken}"))).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            let len = std::fs::metadata(&p).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
    }

    let home = tmp.path().join("home");
    let export = tmp.path().join("export");
    let bin = crate::support::LAWA;
    let script = tmp.path().join("run.sh");
    std::fs::write(
        &script,
        format!(
            "cd '{dir}'\nLAWA_HOME='{home}' NO_COLOR=1 RAYON_NUM_THREADS=1 '{bin}' explore '{run}' \
             --device cpu --max-tokens 512 --export-dir '{export}' 2>'{dir}/stderr.txt'\n\
             echo \"LAWA EXITED $?\"\nsleep 60\n",
            dir = tmp.path().display(),
            home = home.display(),
            run = run.display(),
            export = export.display(),
        ),
    )
    .unwrap();
    let tmux = Tmux {
        socket: format!("lawa-e2e-{}", std::process::id()),
        session: "lawa".into(),
    };
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "lawa",
        "-x",
        "100",
        "-y",
        "30",
        &format!("bash '{}'", script.display()),
    ]);

    tmux.wait_for("the explorer", 60, |s| {
        s.contains("Checkpoints") && s.contains("Jobs")
    });
    assert_eq!(
        tmux.var("#{alternate_on}"),
        "1",
        "the explorer uses the alternate screen"
    );
    // The explorer checks the checkpoints' headers once, a second after it starts, and says
    // which cannot be read in the status line, over whatever it said before: wait for that
    // before pressing keys, or it can replace a later message (the export's) before it is seen.
    tmux.wait_for("the unreadable checkpoint's warning", 60, |s| {
        s.contains("1 checkpoint(s) cannot be read")
    });
    // A job that fails: the raw eval of the broken checkpoint.
    tmux.keys(&["Home"]);
    tmux.keys(&["r"]);
    let failed = tmux.wait_for("the failed job", 120, |s| {
        s.contains("jobs finished: 1 failed")
    });
    assert!(failed.contains("Jobs 0 active"), "{failed}");
    // Then a good one: cursor to the second-to-last checkpoint.
    tmux.keys(&["End"]);
    tmux.keys(&["k"]);
    tmux.wait_for("the cursor to move", 10, |s| {
        list_row(s, target).is_some() && s.contains(&format!("Checkpoints {}/", sorted.len() - 1))
    });
    tmux.keys(&["Enter"]);
    // The result row: raw and averaged perplexity appear, with the average's change (at this
    // width the Δ% column takes the train loss's place once the curve has results).
    let screen = tmux.wait_for("the result row", 240, |s| {
        list_row(s, target).is_some_and(|row| decimals(&row) >= 2 && row.contains('%'))
    });
    let row = list_row(&screen, target).unwrap();
    assert!(decimals(&row) >= 2 && row.contains('%'), "{row}");
    // Both new jobs are shown done (not the failed row's neighbours), and nothing is active.
    let screen = tmux.wait_for("the jobs to finish", 60, |s| {
        s.contains("jobs finished: 2 done") && s.contains("Jobs 0 active")
    });
    assert_eq!(screen.matches("✓").count(), 2, "{screen}");

    tmux.keys(&["e"]);
    tmux.wait_for("the export", 60, |s| s.contains("exported"));
    tmux.keys(&["q"]);
    let after = tmux.wait_for("lawa to exit", 30, |s| s.contains("LAWA EXITED"));
    assert!(after.contains("LAWA EXITED 0"), "{after}");
    assert_eq!(tmux.var("#{alternate_on}"), "0", "the main screen is back");
    assert_eq!(tmux.var("#{mouse_any_flag}"), "0", "mouse reporting is off");
    assert_eq!(tmux.var("#{cursor_flag}"), "1", "the cursor is visible");

    let stem = "run";
    for f in [
        format!("{stem}.png"),
        format!("{stem}.svg"),
        format!("{stem}-results.csv"),
        format!("{stem}-results.json"),
    ] {
        let p = export.join(&f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
            "{} exported",
            p.display()
        );
    }
    let csv = std::fs::read_to_string(export.join("run-results.csv")).unwrap();
    assert!(csv.contains(&format!(",{target},raw,")), "{csv}");
    assert!(csv.contains(&format!(",{target},uniform,")), "{csv}");
    // The results were stored: a second session would show them at once.
    let results = lawa::results::ResultsStore::open(
        &home
            .join("trajectories")
            .join(lawa::results::source_key(&run.display().to_string())),
    )
    .unwrap()
    .0;
    // Perplexity and the demo's cloze task (its trajectory.json lists it), raw and averaged.
    assert_eq!(results.records().len(), 4);
    assert_eq!(
        results
            .records()
            .iter()
            .filter(|r| r.task.is_some())
            .count(),
        2
    );
    assert!(results.records().iter().all(|r| r.end_step == target));
    // Headless export from the stored results gives the same tables.
    let again = tmp.path().join("export2");
    crate::support::Out::of(
        Command::new(bin)
            .env("LAWA_HOME", &home)
            .args(["export", &run.display().to_string(), "--out"])
            .arg(&again),
    )
    .success();
    // Same rows (floats read back from the store may differ in the last digit).
    let key = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split(',').take(13).collect::<Vec<_>>().join(","))
            .collect()
    };
    // The explorer exports what it shows (perplexity here); the headless export the whole
    // store: those rows and the cloze task's.
    let all = key(&std::fs::read_to_string(again.join("run-results.csv")).unwrap());
    let shown = key(&csv);
    assert!(
        shown.iter().all(|row| all.contains(row)),
        "{shown:?} in {all:?}"
    );
    assert_eq!(all.len(), shown.len() + 2);
    assert_eq!(
        all.iter().filter(|r| r.contains(",cloze.jsonl,")).count(),
        2
    );
    assert!(again.join("run.png").is_file() && again.join("run.svg").is_file());
    let stderr = std::fs::read_to_string(tmp.path().join("stderr.txt")).unwrap_or_default();
    assert!(stderr.trim().is_empty(), "nothing on stderr: {stderr}");
}
