//! Hub trajectories against a real HTTP server on 127.0.0.1 (tests/support/hub_server.rs)
//! serving the generated Pythia-shaped trajectory in tests/fixtures/hub/pythia-tiny as branches.
//! Every test passes the endpoint and a temp cache explicitly, so they run in parallel and no
//! environment variable is touched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::hub_server::{commit_of, sha256_hex, Branch, Faults, HubServer, Repo};
use lawa::progress::{CancelToken, Progress, Reporter, Unit};
use lawa::source::hub::{self, HubError, HubOptions};

const REPO: &str = "EleutherAI/pythia-tiny";
const FOLDER: &str = "models--EleutherAI--pythia-tiny";

fn fixtures() -> PathBuf {
    crate::support::fixture("hub/pythia-tiny")
}

fn server() -> HubServer {
    HubServer::start(vec![(REPO, Repo::from_dir(REPO, &fixtures()))], None)
}

fn opts(server: &HubServer, dir: &Path) -> HubOptions {
    HubOptions {
        endpoint: server.url(),
        cache_dir: dir.join("hub"),
        token: None,
        offline: false,
        retries: 3,
        retry_delay: Duration::from_millis(5),
        listing_dir: Some(dir.join("lawa")),
        read_timeout: Duration::from_secs(30),
    }
}

/// A reporter recording every progress report.
fn recorder() -> (Reporter, Arc<Mutex<Vec<Progress>>>, CancelToken) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let token = CancelToken::new();
    let r = Reporter::new(token.clone(), move |p| s.lock().unwrap().push(p));
    (r, seen, token)
}

fn details(seen: &Arc<Mutex<Vec<Progress>>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|p| p.detail.clone())
        .collect()
}

fn blobs(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join(FOLDER).join("blobs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn lists_step_branches_sorted_with_tokens_and_downloads_nothing() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let t = hub::open(&format!("hf:{REPO}"), &opts(&server, dir.path())).unwrap();
    assert_eq!(t.steps(), vec![1, 2, 4, 1000, 2000, 3000]);
    assert_eq!(t.name, REPO);
    assert_eq!(t.source, format!("hf:{REPO}"));
    assert_eq!(t.tokens_per_step, Some(2_097_152));
    assert_eq!(t.checkpoints[3].name, "step1000");
    assert_eq!(t.checkpoints[3].tokens, Some(1000 * 2_097_152));
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(
        server.log(),
        vec![format!("GET /api/models/{REPO}/refs")],
        "listing made other requests"
    );
    assert!(!dir.path().join("hub").join(FOLDER).exists());
}

#[test]
fn downloads_one_checkpoint_into_the_python_cache_layout() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    let (rep, seen, _) = recorder();
    let snap = hub::download_checkpoint(REPO, "step1000", &o, &rep).unwrap();

    let commit = commit_of(REPO, "step1000");
    let repo_dir = o.cache_dir.join(FOLDER);
    assert_eq!(snap, repo_dir.join("snapshots").join(&commit));
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/step1000")).unwrap(),
        commit
    );
    let src = fixtures().join("step1000");
    for f in ["config.json", "pytorch_model.bin", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(snap.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
        // Snapshot entries are relative symlinks into blobs/, as huggingface_hub makes them.
        let target = std::fs::read_link(snap.join(f)).unwrap();
        assert!(
            target.starts_with("../../blobs"),
            "{f} -> {}",
            target.display()
        );
    }
    let bin = std::fs::read(src.join("pytorch_model.bin")).unwrap();
    let weights_blob = sha256_hex(&bin);
    assert_eq!(
        std::fs::read_link(snap.join("pytorch_model.bin")).unwrap(),
        Path::new("../../blobs").join(&weights_blob)
    );
    assert!(blobs(&o.cache_dir)
        .iter()
        .all(|b| !b.ends_with(".incomplete")));
    // Only this checkpoint's files were fetched, and nothing of the other branches.
    let log = server.log();
    assert!(
        log.iter()
            .all(|l| !l.contains("step2000") && !l.contains("step1/")),
        "{log:?}"
    );

    // Byte progress: the total is the size of the files fetched after the listing, and ends there.
    let seen = seen.lock().unwrap();
    let bytes: Vec<&Progress> = seen
        .iter()
        .filter(|p| p.unit == Unit::Bytes && p.total.is_some_and(|t| t > 0))
        .collect();
    let expected: u64 = ["pytorch_model.bin", "tokenizer.json"]
        .iter()
        .map(|f| std::fs::metadata(src.join(f)).unwrap().len())
        .sum();
    let last = bytes.last().expect("byte progress");
    assert_eq!(last.total, Some(expected));
    assert_eq!(last.done, expected);
    assert!(bytes.windows(2).all(|w| w[0].done <= w[1].done));
}

#[test]
fn downloads_a_sharded_checkpoint_by_its_index() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    let snap = hub::download_checkpoint(REPO, "step3000", &o, &Reporter::silent()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&snap)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "config.json",
            "pytorch_model-00001-of-00002.bin",
            "pytorch_model-00002-of-00002.bin",
            "pytorch_model.bin.index.json",
            "tokenizer.json"
        ]
    );
    for n in &names {
        assert_eq!(
            std::fs::read(snap.join(n)).unwrap(),
            std::fs::read(fixtures().join("step3000").join(n)).unwrap()
        );
    }
}

#[test]
fn cache_is_reused_with_the_server_stopped() {
    let mut server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    hub::open(REPO, &o).unwrap();
    let a = hub::download_checkpoint(REPO, "step2", &o, &Reporter::silent()).unwrap();
    let b = hub::download_checkpoint(REPO, "step4", &o, &Reporter::silent()).unwrap();
    server.clear_log();
    // Already cached: no request at all.
    assert_eq!(
        hub::download_checkpoint(REPO, "step2", &o, &Reporter::silent()).unwrap(),
        a
    );
    assert!(server.log().is_empty(), "{:?}", server.log());

    server.stop();
    assert_eq!(
        hub::download_checkpoint(REPO, "step4", &o, &Reporter::silent()).unwrap(),
        b
    );
    // Listing falls back to the cache and the kept listing, and says so.
    let t = hub::open(REPO, &o).unwrap();
    assert_eq!(t.steps(), vec![1, 2, 4, 1000, 2000, 3000]);
    assert!(
        t.warnings[0].contains("network error talking to")
            && t.warnings[0].contains("from the cache"),
        "{:?}",
        t.warnings
    );
    assert!(t.warnings[1].contains("4 of 6 checkpoints are not in the cache"));
    // A checkpoint that is not cached cannot be fetched: a clear network error.
    let e = hub::download_checkpoint(REPO, "step1000", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::Network { .. }), "{e}");
    assert!(e.to_string().contains("--offline"), "{e}");
}

#[test]
fn offline_mode_works_from_the_cache_and_names_what_is_missing() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&server, dir.path());
    o.offline = true;
    let e = hub::open(REPO, &o).unwrap_err();
    assert!(matches!(e, HubError::NothingCached { .. }), "{e}");

    o.offline = false;
    hub::open(REPO, &o).unwrap();
    hub::download_checkpoint(REPO, "step1", &o, &Reporter::silent()).unwrap();
    hub::download_checkpoint(REPO, "step3000", &o, &Reporter::silent()).unwrap();
    server.clear_log();

    o.offline = true;
    let t = hub::open(REPO, &o).unwrap();
    assert_eq!(t.steps(), vec![1, 2, 4, 1000, 2000, 3000]);
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    let w = &t.warnings[0];
    assert!(
        w.starts_with("offline: 4 of 6 checkpoints are not in the cache"),
        "{w}"
    );
    assert!(
        w.contains("step2, step4, step1000, step2000") && !w.contains("step3000"),
        "{w}"
    );
    let snap = hub::download_checkpoint(REPO, "step3000", &o, &Reporter::silent()).unwrap();
    assert!(snap.join("pytorch_model.bin.index.json").exists());
    let e = hub::download_checkpoint(REPO, "step2", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::NotCached { .. }), "{e}");
    assert!(e.to_string().contains("pythia-tiny@step2") && e.to_string().contains("offline"));
    assert!(
        server.log().is_empty(),
        "offline mode used the network: {:?}",
        server.log()
    );

    // Without a kept listing, offline mode lists the cache's refs.
    o.listing_dir = None;
    let t = hub::open(REPO, &o).unwrap();
    assert_eq!(t.steps(), vec![1, 3000]);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn unknown_repo_private_repo_and_no_step_branches_are_clear_errors() {
    let private = Repo {
        private: true,
        ..Repo::from_dir("Org/private", &fixtures())
    };
    let plain = Repo::with_branches(vec![Branch {
        name: "main".into(),
        commit: commit_of("Org/plain", "main"),
        files: vec![("config.json".into(), b"{}".to_vec())],
    }]);
    let server = HubServer::start(
        vec![
            (REPO, Repo::from_dir(REPO, &fixtures())),
            ("Org/private", private),
            ("Org/plain", plain),
        ],
        Some("hf_secret"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&server, dir.path());

    let e = hub::open("hf:Org/nothing", &o).unwrap_err();
    assert!(matches!(e, HubError::RepoNotFound { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("hub repo Org/nothing not found at {}", server.url())
    );

    let e = hub::open("hf:Org/private", &o).unwrap_err();
    assert!(matches!(e, HubError::AuthRequired { .. }), "{e}");
    assert!(e.to_string().contains("set HF_TOKEN"), "{e}");
    let e = hub::download_checkpoint("Org/private", "step1", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::AuthRequired { .. }), "{e}");

    o.token = Some("wrong".into());
    let e = hub::open("hf:Org/private", &o).unwrap_err();
    assert!(matches!(e, HubError::TokenRejected { .. }), "{e}");

    o.token = Some("hf_secret".into());
    assert_eq!(
        hub::open("hf:Org/private", &o).unwrap().checkpoints.len(),
        6
    );
    let snap = hub::download_checkpoint("Org/private", "step2", &o, &Reporter::silent()).unwrap();
    assert!(snap.join("pytorch_model.bin").exists());

    let e = hub::open("hf:Org/plain", &o).unwrap_err();
    assert!(matches!(e, HubError::NoStepBranches { .. }), "{e}");
    assert!(e.to_string().contains("(branches: main)"), "{e}");

    let e = hub::download_checkpoint(REPO, "step7", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::NoConfig { .. }), "{e}");
    assert!(e.to_string().contains("is step7 a branch"), "{e}");

    let e = hub::open("hf:not a repo", &o).unwrap_err();
    assert!(matches!(e, HubError::InvalidRepo { .. }), "{e}");
    for e in [
        hub::open("hf:Org/nothing", &o).unwrap_err().to_string(),
        hub::open("hf:Org/plain", &o).unwrap_err().to_string(),
    ] {
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn rate_limits_are_retried_with_a_message_then_reported() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    server.set_faults(Faults {
        rate_limit: 2,
        retry_after: Some(0),
        ..Default::default()
    });
    let (rep, seen, _) = recorder();
    let t = hub::open_with(REPO, &o, &rep).unwrap();
    assert_eq!(t.checkpoints.len(), 6);
    let msgs = details(&seen);
    assert_eq!(
        msgs.iter()
            .filter(|m| m.contains("rate limited by the hub"))
            .count(),
        2,
        "{msgs:?}"
    );
    assert!(msgs[0].contains("retry 1 of 3"), "{msgs:?}");

    // The download path retries too.
    server.set_faults(Faults {
        rate_limit: 3,
        retry_after: Some(0),
        ..Default::default()
    });
    let (rep, seen, _) = recorder();
    hub::download_checkpoint(REPO, "step2", &o, &rep).unwrap();
    assert!(details(&seen).iter().any(|m| m.contains("rate limited")));

    // A rate limit that does not end: a clear error after the retries.
    server.set_faults(Faults {
        rate_limit: 1000,
        retry_after: None,
        ..Default::default()
    });
    let e = hub::open(REPO, &o).unwrap_err();
    assert!(
        matches!(e, HubError::RateLimited { attempts: 4, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("wait a few minutes"), "{e}");
    let e = hub::download_checkpoint(REPO, "step4", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::RateLimited { .. }), "{e}");
    assert!(hub::cached_checkpoint(&hub::RepoId::parse(REPO).unwrap(), "step4", &o).is_none());
}

#[test]
fn a_connection_dropped_mid_file_is_retried_and_never_leaves_a_complete_looking_file() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    let bin = std::fs::read(fixtures().join("step1000/pytorch_model.bin")).unwrap();
    let sha = sha256_hex(&bin);

    // Dropped once: retried, with a message, and the file is intact.
    server.set_faults(Faults {
        drop_body: 1,
        ..Default::default()
    });
    let (rep, seen, _) = recorder();
    let snap = hub::download_checkpoint(REPO, "step1000", &o, &rep).unwrap();
    assert_eq!(std::fs::read(snap.join("pytorch_model.bin")).unwrap(), bin);
    assert!(
        details(&seen)
            .iter()
            .any(|m| m.contains("connection problem") && m.contains("retrying")),
        "{:?}",
        details(&seen)
    );

    // Dropped every time: an error naming the file, and nothing in the cache looks complete.
    server.set_faults(Faults {
        drop_body: 1000,
        ..Default::default()
    });
    let e = hub::download_checkpoint(REPO, "step2000", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::Network { attempts: 4, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("pythia-tiny@step2000/pytorch_model.bin"),
        "{e}"
    );
    let bin2 = std::fs::read(fixtures().join("step2000/pytorch_model.bin")).unwrap();
    let sha2 = sha256_hex(&bin2);
    let b = blobs(&o.cache_dir);
    assert!(!b.contains(&sha2), "{b:?}");
    assert!(b.contains(&sha), "{b:?}");
    let snap2 = o
        .cache_dir
        .join(FOLDER)
        .join("snapshots")
        .join(commit_of(REPO, "step2000"));
    assert!(!snap2.join("pytorch_model.bin").exists());
    let repo = hub::RepoId::parse(REPO).unwrap();
    assert!(hub::cached_checkpoint(&repo, "step2000", &o).is_none());

    // Once the network is back, the same call completes cleanly.
    server.set_faults(Faults::default());
    let snap2 = hub::download_checkpoint(REPO, "step2000", &o, &Reporter::silent()).unwrap();
    assert_eq!(
        std::fs::read(snap2.join("pytorch_model.bin")).unwrap(),
        bin2
    );
    assert!(!blobs(&o.cache_dir).contains(&format!("{sha2}.incomplete")));
}

#[test]
fn an_error_page_is_never_stored_as_a_blob() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    server.set_faults(Faults {
        error_page: 1,
        ..Default::default()
    });
    let (rep, seen, _) = recorder();
    let snap = hub::download_checkpoint(REPO, "step4", &o, &rep).unwrap();
    assert_eq!(
        std::fs::read(snap.join("pytorch_model.bin")).unwrap(),
        std::fs::read(fixtures().join("step4/pytorch_model.bin")).unwrap()
    );
    assert!(
        details(&seen).iter().any(|m| m.contains("arrived corrupt")),
        "{:?}",
        details(&seen)
    );

    server.set_faults(Faults {
        error_page: 1000,
        ..Default::default()
    });
    let e = hub::download_checkpoint(REPO, "step2", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::Corrupt { .. }), "{e}");
    let snap = o
        .cache_dir
        .join(FOLDER)
        .join("snapshots")
        .join(commit_of(REPO, "step2"));
    assert!(!snap.join("pytorch_model.bin").exists());
    let bin = std::fs::read(fixtures().join("step2/pytorch_model.bin")).unwrap();
    assert!(!blobs(&o.cache_dir).contains(&sha256_hex(&bin)));
}

#[test]
fn disk_full_is_a_clear_error() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    // hf-hub writes the body to blobs/<etag>.incomplete: make that file /dev/full (ENOSPC).
    let bin = std::fs::read(fixtures().join("step1/pytorch_model.bin")).unwrap();
    let sha = sha256_hex(&bin);
    let blobs_dir = o.cache_dir.join(FOLDER).join("blobs");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    std::os::unix::fs::symlink("/dev/full", blobs_dir.join(format!("{sha}.incomplete"))).unwrap();
    let e = hub::download_checkpoint(REPO, "step1", &o, &Reporter::silent()).unwrap_err();
    assert!(matches!(e, HubError::DiskFull { .. }), "{e}");
    assert!(
        e.to_string().starts_with("disk full while downloading"),
        "{e}"
    );
    assert!(!blobs_dir.join(&sha).exists());
}

#[test]
fn a_cancelled_download_stops_and_a_later_one_completes() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    let token = CancelToken::new();
    let t2 = token.clone();
    // Cancel as soon as the weights file starts.
    let rep = Reporter::new(token, move |p| {
        if p.detail
            .as_deref()
            .is_some_and(|d| d.ends_with("pytorch_model.bin"))
        {
            t2.cancel();
        }
    });
    let e = hub::download_checkpoint(REPO, "step1000", &o, &rep).unwrap_err();
    assert!(matches!(e, HubError::Cancelled), "{e}");
    let repo = hub::RepoId::parse(REPO).unwrap();
    assert!(hub::cached_checkpoint(&repo, "step1000", &o).is_none());
    let snap = hub::download_checkpoint(REPO, "step1000", &o, &Reporter::silent()).unwrap();
    assert!(snap.join("pytorch_model.bin").exists());
}

#[test]
fn a_stalled_transfer_times_out_and_is_retried() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&server, dir.path());
    o.read_timeout = Duration::from_millis(300);
    server.set_faults(Faults {
        stall_body: 1,
        ..Default::default()
    });
    let (rep, seen, _) = recorder();
    let snap = hub::download_checkpoint(REPO, "step1", &o, &rep).unwrap();
    assert_eq!(
        std::fs::read(snap.join("pytorch_model.bin")).unwrap(),
        std::fs::read(fixtures().join("step1/pytorch_model.bin")).unwrap()
    );
    assert!(
        details(&seen)
            .iter()
            .any(|m| m.contains("connection problem")),
        "{:?}",
        details(&seen)
    );
}

#[test]
fn concurrent_jobs_asking_for_the_same_checkpoint_take_turns() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&server, dir.path());
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| hub::download_checkpoint(REPO, "step3000", &o, &Reporter::silent()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    // Each shard was fetched once.
    let shard_gets = server
        .log()
        .iter()
        .filter(|l| l.starts_with("GET /cdn/"))
        .count();
    assert_eq!(shard_gets, 2, "{:?}", server.log());
}
