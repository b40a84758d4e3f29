//! The `lawa` binary on `hf:ORG/NAME`, pointed at the test hub server through the environment of
//! each child process (`HF_ENDPOINT`, a temp `HF_HOME`), so nothing process-wide is touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::hub_server::{HubServer, Repo};

const REPO: &str = "EleutherAI/pythia-tiny";

fn fixtures() -> PathBuf {
    crate::support::fixture("hub/pythia-tiny")
}

fn lawa(server: &HubServer, home: &Path, args: &[&str]) -> Output {
    Command::new(crate::support::LAWA)
        .args(args)
        .env("HF_ENDPOINT", server.url())
        .env("HF_HOME", home.join("hf"))
        .env("LAWA_CACHE_DIR", home.join("lawa"))
        .env("LAWA_HUB_RETRY_DELAY_MS", "5")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn lawa_list_shows_the_step_branches_and_fails_clearly() {
    let server = HubServer::start(vec![(REPO, Repo::from_dir(REPO, &fixtures()))], None);
    let home = tempfile::tempdir().unwrap();

    let out = lawa(
        &server,
        home.path(),
        &["list", &format!("hf:{REPO}"), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<u64> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 4, 1000, 2000, 3000]);
    assert_eq!(
        v["checkpoints"][5]["tokens"].as_u64(),
        Some(3000 * 2_097_152)
    );
    // Listing fetched no file.
    assert!(
        server.log().iter().all(|l| !l.contains("/resolve/")),
        "{:?}",
        server.log()
    );

    let out = lawa(&server, home.path(), &["list", &format!("hf:{REPO}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("step3000") && table.contains("remote"),
        "{table}"
    );

    // Errors: one line on stderr, non-zero exit.
    let out = lawa(&server, home.path(), &["list", "hf:Org/nothing"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("hub repo Org/nothing not found"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let out = lawa(
        &server,
        empty.path(),
        &["--offline", "list", &format!("hf:{REPO}")],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("offline: no checkpoints of EleutherAI/pythia-tiny"),
        "{err}"
    );

    // After an online listing, --offline lists the whole run from what was kept.
    let out = lawa(
        &server,
        home.path(),
        &["list", &format!("hf:{REPO}"), "--offline"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        all.contains("6 of 6 checkpoints are not in the cache"),
        "{all}"
    );
}

#[test]
fn lawa_average_of_a_hub_window_equals_the_average_of_the_local_run() {
    let server = HubServer::start(vec![(REPO, Repo::from_dir(REPO, &fixtures()))], None);
    let home = tempfile::tempdir().unwrap();
    let out_hub = home.path().join("avg-hub");
    let out_local = home.path().join("avg-local");
    let hub_out = out_hub.to_str().unwrap();
    let out = lawa(
        &server,
        home.path(),
        &[
            "average",
            &format!("hf:{REPO}"),
            "--at",
            "3000",
            "--last",
            "3",
            "--out",
            hub_out,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Only the three checkpoints of the window were asked for (the identical config.json of
    // the later ones is not fetched again: same blob).
    let fetched: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.starts_with("HEAD") && l.contains("/resolve/") && l.ends_with("config.json"))
        .collect();
    assert_eq!(fetched.len(), 3, "{fetched:?}");
    assert!(fetched
        .iter()
        .all(|l| l.contains("step1000") || l.contains("step2000") || l.contains("step3000")));

    // The fixture folder is a run of step folders: the same window from disk.
    let local = fixtures();
    let out = lawa(
        &server,
        home.path(),
        &[
            "average",
            local.to_str().unwrap(),
            "--at",
            "3000",
            "--last",
            "3",
            "--out",
            out_local.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        std::fs::read(out_hub.join("model.safetensors")).unwrap()
            == std::fs::read(out_local.join("model.safetensors")).unwrap(),
        "hub and local averages differ"
    );

    // Offline, the cached window averages again; a window reaching uncached steps fails clearly.
    let again = home.path().join("avg-offline");
    let out = lawa(
        &server,
        home.path(),
        &[
            "--offline",
            "average",
            &format!("hf:{REPO}"),
            "--at",
            "3000",
            "--last",
            "3",
            "--out",
            again.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lawa(
        &server,
        home.path(),
        &[
            "--offline",
            "average",
            &format!("hf:{REPO}"),
            "--at",
            "3000",
            "--last",
            "4",
            "--out",
            home.path().join("x").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("pythia-tiny@step4 is not in the Hugging Face cache"),
        "{err}"
    );
    assert!(!home.path().join("x").exists());
}
