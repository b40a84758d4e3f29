//! `hf:ORG/NAME` through the public entry points (`source::open`, `source::local_path`) with
//! the variables a user sets: `HF_ENDPOINT` pointing at the test hub server, a temp `HF_HOME`,
//! `HF_HUB_OFFLINE`. They go through [`lawa::Env::from_vars`], the parsing `Env::from_process`
//! does after reading them, not through this process's environment, which the tests of this
//! binary share across threads; `hub_cli` sets the same variables on a real `lawa` process.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::support::hub_server::{commit_of, HubServer, Repo};
use crate::support::s;
use lawa::progress::Reporter;
use lawa::source::hub::{self, HubError};
use lawa::source::{self, Location, SourceError};

const REPO: &str = "EleutherAI/pythia-tiny";

/// The hub options as the CLI builds them from the environment of a user pointed at `server`
/// with a fresh HF_HOME under `dir` (and HF_HUB_OFFLINE=1 when `offline`).
fn options(server: &HubServer, dir: &Path, offline: bool) -> lawa::HubOptions {
    let (url, hf, kept) = (server.url(), dir.join("hf"), dir.join("lawa"));
    let mut vars = vec![
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HOME", s(&hf)),
        ("LAWA_CACHE_DIR", s(&kept)),
        ("LAWA_HUB_RETRY_DELAY_MS", "5"),
    ];
    if offline {
        vars.push(("HF_HUB_OFFLINE", "1"));
    }
    lawa::Config::builder()
        .env(lawa::Env::from_vars(vars))
        .build()
        .hub
}

fn fixtures() -> PathBuf {
    crate::support::fixture("hub/pythia-tiny")
}

#[test]
fn hf_sources_list_download_and_work_offline_through_the_environment() {
    let server = HubServer::start(vec![(REPO, Repo::from_dir(REPO, &fixtures()))], None);
    let dir = tempfile::tempdir().unwrap();
    let offline = Cell::new(false);
    let hf = || options(&server, dir.path(), offline.get());

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
    offline.set(true);
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
}
