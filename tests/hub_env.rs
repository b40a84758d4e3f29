//! `hf:ORG/NAME` through the public entry points (`source::open`, `source::local_path`) with
//! the environment the user sets: `HF_ENDPOINT` pointing at the test hub server, a temp
//! `HF_HOME`, `HF_HUB_OFFLINE`. Environment variables are process-wide, so these tests live in
//! their own binary and take a lock.

#[path = "support/hub_server.rs"]
mod hub_server;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hub_server::{commit_of, HubServer, Repo};
use lawa::progress::Reporter;
use lawa::source::hub::{self, HubError};
use lawa::source::{self, Location, SourceError};

const REPO: &str = "EleutherAI/pythia-tiny";

static ENV: Mutex<()> = Mutex::new(());

/// The hub options as the CLI builds them: from the process environment, read now.
fn hf() -> lawa::HubOptions {
    lawa::Config::builder()
        .env(lawa::Env::from_process())
        .build()
        .hub
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hub/pythia-tiny")
}

/// Points the process at `server` with a fresh HF_HOME under `dir`.
fn set_env(server: &HubServer, dir: &Path) {
    for k in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
        "XDG_CACHE_HOME",
    ] {
        std::env::remove_var(k);
    }
    std::env::set_var("HF_ENDPOINT", server.url());
    std::env::set_var("HF_HOME", dir.join("hf"));
    std::env::set_var("LAWA_CACHE_DIR", dir.join("lawa"));
    std::env::set_var("LAWA_HUB_RETRY_DELAY_MS", "5");
}

#[test]
fn hf_sources_list_download_and_work_offline_through_the_environment() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let server = HubServer::start(vec![(REPO, Repo::from_dir(REPO, &fixtures()))], None);
    let dir = tempfile::tempdir().unwrap();
    set_env(&server, dir.path());

    let t = source::open(&format!("hf:{REPO}"), &hf()).unwrap();
    assert_eq!(t.steps(), vec![1, 2, 4, 1000, 2000, 3000]);
    assert_eq!(t.checkpoints[4].tokens, Some(2000 * 2_097_152));
    let ck = t.checkpoint(2000).unwrap();
    assert_eq!(
        ck.location,
        Location::Hub {
            repo: REPO.into(),
            revision: "step2000".into()
        }
    );

    // local_path downloads into $HF_HOME/hub in huggingface_hub's layout.
    let p = source::local_path(ck, &hf(), &Reporter::silent()).unwrap();
    let repo_dir = dir.path().join("hf/hub/models--EleutherAI--pythia-tiny");
    assert_eq!(
        p,
        repo_dir.join("snapshots").join(commit_of(REPO, "step2000"))
    );
    for f in ["config.json", "pytorch_model.bin", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(p.join(f)).unwrap(),
            std::fs::read(fixtures().join("step2000").join(f)).unwrap()
        );
    }
    assert_eq!(hub::cached_location(&ck.location, &hf()), Some(p.clone()));
    assert_eq!(
        hub::cached_location(&t.checkpoint(4).unwrap().location, &hf()),
        None
    );
    let p3 = source::local_path(t.checkpoint(3000).unwrap(), &hf(), &Reporter::silent()).unwrap();
    assert!(p3.join("pytorch_model-00002-of-00002.bin").exists());

    // The HF-cache source (ORG/NAME without hf:) reads what the hub source downloaded.
    let cached = source::open(REPO, &hf()).unwrap();
    assert_eq!(cached.steps(), vec![2000, 3000]);

    // Offline: the whole run is listed, the missing checkpoints named, nothing fetched.
    server.clear_log();
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let t = source::open(&format!("hf:{REPO}"), &hf()).unwrap();
    assert_eq!(t.steps(), vec![1, 2, 4, 1000, 2000, 3000]);
    assert!(
        t.warnings[0].contains("4 of 6 checkpoints are not in the cache"),
        "{:?}",
        t.warnings
    );
    assert_eq!(
        source::local_path(t.checkpoint(2000).unwrap(), &hf(), &Reporter::silent()).unwrap(),
        p
    );
    let e = source::local_path(t.checkpoint(4).unwrap(), &hf(), &Reporter::silent()).unwrap_err();
    assert!(
        matches!(e, SourceError::Hub(HubError::NotCached { .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("pythia-tiny@step4 is not in the Hugging Face cache"),
        "{e}"
    );
    assert!(server.log().is_empty(), "{:?}", server.log());
    std::env::remove_var("HF_HUB_OFFLINE");
}
