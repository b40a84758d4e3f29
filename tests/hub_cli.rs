//! The `lawa` binary on `hf:ORG/NAME`, pointed at the test hub server through the environment of
//! each child process (`HF_ENDPOINT`, a temp `HF_HOME`), so nothing process-wide is touched.

#[path = "support/hub_server.rs"]
mod hub_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hub_server::{HubServer, Repo};

const REPO: &str = "EleutherAI/pythia-tiny";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hub/pythia-tiny")
}

fn lawa(server: &HubServer, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lawa"))
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

    let out = lawa(&server, home.path(), &["list", &format!("hf:{REPO}"), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<u64> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 4, 1000, 2000, 3000]);
    assert_eq!(v["checkpoints"][5]["tokens"].as_u64(), Some(3000 * 2_097_152));
    // Listing fetched no file.
    assert!(server.log().iter().all(|l| !l.contains("/resolve/")), "{:?}", server.log());

    let out = lawa(&server, home.path(), &["list", &format!("hf:{REPO}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("step3000") && table.contains("remote"), "{table}");

    // Errors: one line on stderr, non-zero exit.
    let out = lawa(&server, home.path(), &["list", "hf:Org/nothing"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("hub repo Org/nothing not found"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let out = lawa(&server, empty.path(), &["--offline", "list", &format!("hf:{REPO}")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("offline: no checkpoints of EleutherAI/pythia-tiny"), "{err}");

    // After an online listing, --offline lists the whole run from what was kept.
    let out = lawa(&server, home.path(), &["list", &format!("hf:{REPO}"), "--offline"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("6 of 6 checkpoints are not in the cache"), "{all}");
}
