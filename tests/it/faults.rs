//! Fault injection: many pulls of one repository from the test hub, each
//! with random faults on random files (dropped connections at random
//! offsets, wrong bytes, 5xx/429/404 answers, failed metadata probes,
//! ignored ranges, slow answers). Every pull must end as a verified complete
//! model or as a clean error (exit 1, `error:` on stderr, no panic); the
//! store must hold only verified blobs that its manifests need, and a pull
//! without faults afterwards must complete.
//!
//! `LLMCTL_FAULT_RUNS` sets the number of runs (default 40; `tests/fuzz/run.sh`
//! runs more).

#![allow(clippy::print_stderr, reason = "tests report measured figures (seen with --nocapture)")]

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::TestContext;
use crate::support::hub::{Fault, Gate, ListingFault, TestHub};
use crate::support::models::{self, sha256_of};
use crate::support::rng::Rng;

const REPO: &str = "org/tiny";

fn random_fault(rng: &mut Rng, size: u64) -> Fault {
    match rng.below(9) {
        0 => Fault::DropAfter(rng.below(size)),
        1 => Fault::CorruptByteAt(rng.below(size)),
        2 => Fault::Status { code: [500, 502, 503, 429][rng.below(4) as usize], times: 1 + rng.below(5) as u32 },
        3 => Fault::Status { code: 404, times: 1 },
        4 => Fault::OverlongBody { extra: 1 + rng.below(1 << 20), content_length: rng.below(2) == 0 },
        5 => Fault::IgnoreRange,
        6 => Fault::BadContentRange,
        7 => Fault::StatusRetryAfter {
            code: [503, 429][rng.below(2) as usize],
            times: 1 + rng.below(2) as u32,
            seconds: 0,
        },
        _ => Fault::Delay(Duration::from_millis(rng.below(40))),
    }
}

/// Headers a hostile mirror sends, which must never become paths.
const HOSTILE_HEADERS: [(&str, &str); 3] =
    [("ETag", "\"../../../../outside\""), ("X-Repo-Commit", "../../../../x"), ("X-Linked-Etag", "\"/etc/passwd\"")];

/// Every manifest's files are blobs whose bytes hash to their names and
/// equal the repository's originals; no blob is unreferenced.
fn assert_store_consistent(ctx: &TestContext, originals: &BTreeMap<String, Vec<u8>>, context: &str) {
    let listed = ctx.run(&["list", "--names"]).stdout.clone();
    let mut referenced = std::collections::BTreeSet::new();
    for name in listed.lines() {
        let show = ctx.run(&["show", name, "--json"]).json();
        for file in show["files"].as_array().unwrap() {
            let sha = file["sha256"].as_str().unwrap();
            let blob = ctx.store().join("blobs").join(format!("sha256-{sha}"));
            assert!(blob.is_file(), "{context}: `{name}` references a missing blob for {}", file["name"]);
            assert_eq!(sha256_of(&blob), sha, "{context}: blob of {} does not hash to its name", file["name"]);
            let original = &originals[file["name"].as_str().unwrap()];
            assert_eq!(&std::fs::read(&blob).unwrap(), original, "{context}: {} differs from the hub's", file["name"]);
            referenced.insert(format!("sha256-{sha}"));
        }
    }
    let blobs: std::collections::BTreeSet<String> = std::fs::read_dir(ctx.store().join("blobs"))
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(blobs, referenced, "{context}: the store holds blobs no manifest needs (or misses some)");
}

#[test]
fn every_faulty_pull_ends_verified_or_as_a_clean_error_and_the_store_stays_consistent() {
    let files = models::tiny_llama_repo(7);
    let originals: BTreeMap<String, Vec<u8>> = files.iter().cloned().collect();
    let hub = TestHub::start();
    hub.add_repo(REPO, files.clone());
    let runs: usize = std::env::var("LLMCTL_FAULT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let seed: u64 = std::env::var("LLMCTL_FAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261127);
    let mut rng = Rng(seed);
    let (mut faults, mut completed, mut clean_errors) = (0, 0, 0);
    let mut ctx = None;
    for run in 0..runs {
        // A fresh store every eight runs; in between, partial downloads pile up.
        if run % 8 == 0 {
            ctx = Some(
                TestContext::with_hub(&hub).env("LLMCTL_RETRY_DELAY_MS", "1").env("LLMCTL_STALL_TIMEOUT_MS", "5000"),
            );
        }
        let ctx = ctx.as_ref().unwrap();
        hub.clear_faults();
        let mut injected = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let (name, bytes) = &files[rng.below(files.len() as u64) as usize];
            let fault = random_fault(&mut rng, bytes.len() as u64);
            injected.push(format!("{name}: {fault:?}"));
            hub.set_fault(REPO, name, fault);
            if rng.below(4) == 0 {
                let (header, value) = HOSTILE_HEADERS[rng.below(3) as usize];
                injected.push(format!("{name}: {header}: {value}"));
                hub.set_header_override(REPO, name, header, value);
            }
        }
        if rng.below(8) == 0 {
            let code = [500, 503, 429][rng.below(3) as usize];
            injected.push(format!("listing: HTTP {code}"));
            hub.set_listing_fault(
                REPO,
                ListingFault::Status { code, times: 1 + rng.below(4) as u32, retry_after: Some(0) },
            );
        }
        faults += injected.len();
        let context = format!("run {run} (seed {seed}) with {injected:?}");
        let out = ctx.run(&["pull", REPO]);
        assert!(!out.stderr.contains("panicked"), "{context}: {}", out.stderr);
        match out.code {
            0 => completed += 1,
            1 => {
                assert!(out.stderr.contains("error: "), "{context}: {}", out.stderr);
                clean_errors += 1;
            }
            code => panic!("{context}: exit {code}\n{}", out.stderr),
        }
        assert_store_consistent(ctx, &originals, &context);
        assert!(ctx.outside_store().is_empty(), "{context}: wrote outside the store: {:?}", ctx.outside_store());
        hub.clear_faults();
        ctx.run(&["pull", REPO]).success();
        assert_store_consistent(ctx, &originals, &format!("{context}, then a clean pull"));
        ctx.run(&["rm", REPO]).success();
    }
    eprintln!(
        "{runs} faulty pulls, {faults} faults injected: {completed} completed verified, {clean_errors} clean errors, then {runs} clean pulls verified"
    );
    assert_eq!(completed + clean_errors, runs);
}

#[test]
fn a_pull_waits_for_the_store_lock_and_says_so() {
    let files = models::tiny_llama_repo(7);
    let hub = TestHub::start();
    hub.add_repo(REPO, files);
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["list"]).success(); // creates the store
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(ctx.store().join("lock")).unwrap();
    lock.lock().unwrap();
    let child = ctx
        .command(&["pull", REPO])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "", "nothing is recorded while another holds the lock");
    lock.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for another llmctl to release the store lock..."), "{stderr}");
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "org/tiny\n");
}

#[test]
fn concurrent_pulls_and_removals_leave_a_consistent_store() {
    let files = models::tiny_llama_repo(7);
    let originals: BTreeMap<String, Vec<u8>> = files.iter().cloned().collect();
    let hub = TestHub::start();
    hub.add_repo(REPO, files);
    // Slow answers make the processes overlap.
    hub.set_fault(REPO, "model.safetensors", Fault::Delay(Duration::from_millis(30)));
    let ctx = TestContext::with_hub(&hub);
    let mut children = Vec::new();
    for round in 0..4 {
        for args in [&["pull", REPO][..], &["pull", REPO], &["pull", "org/tiny:kv_int8"], &["rm", REPO]] {
            let child = ctx
                .command(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            children.push((round, args.join(" "), child));
        }
    }
    for (round, what, child) in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "round {round} `{what}`: {stderr}");
        // `rm` may find nothing to remove (exit 2); a pull must succeed.
        if what.starts_with("pull") {
            assert!(out.status.success(), "round {round} `{what}`: {stderr}");
        }
    }
    assert_store_consistent(&ctx, &originals, "after concurrent pulls and removals");
    hub.clear_faults();
    ctx.run(&["pull", REPO]).success();
    assert_store_consistent(&ctx, &originals, "after a final pull");
}

/// Two repositories with the same weights share one partial download per
/// blob: concurrent pulls of both take turns on it and all complete.
#[test]
fn concurrent_pulls_of_repositories_sharing_blobs_all_complete() {
    let files = models::tiny_llama_repo(7);
    let originals: BTreeMap<String, Vec<u8>> = files.iter().cloned().collect();
    let hub = TestHub::start();
    for repo in ["org/a", "org/b"] {
        hub.add_repo(repo, files.clone());
        hub.set_fault(repo, "model.safetensors", Fault::Delay(Duration::from_millis(30)));
    }
    let ctx = TestContext::with_hub(&hub);
    let children: Vec<_> = (0..8)
        .map(|i| {
            let repo = ["org/a", "org/b"][i % 2];
            (
                repo,
                ctx.command(&["pull", repo])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for (repo, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "`pull {repo}`: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_store_consistent(&ctx, &originals, "after concurrent pulls of two repositories");
    assert_eq!(ctx.run(&["list", "--names"]).stdout.lines().count(), 2);
}

type RepoFiles = Vec<(String, Vec<u8>)>;

/// Two repositories whose weights are one blob: `org/b` differs from `org/a`
/// only in `tokenizer_config.json`, which a pull downloads after deciding to
/// reuse the stored weights.
fn repos_sharing_weights(hub: &TestHub) -> (RepoFiles, RepoFiles) {
    let a = models::tiny_llama_repo(7);
    let mut b = a.clone();
    let config = b.iter_mut().find(|(name, _)| name == "tokenizer_config.json").unwrap();
    config.1 = br#"{"add_bos_token": false, "eos_token": "</s>", "model_max_length": 64}"#.to_vec();
    hub.add_repo("org/a", a.clone());
    hub.add_repo("org/b", b.clone());
    (a, b)
}

fn spawn(ctx: &TestContext, args: &[&str]) -> std::process::Child {
    ctx.command(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
}

/// Issue #13: `rm A` while `pull B` counts on a blob of A. The pull is held
/// at its one download, after it decided to reuse A's weights; `rm` runs to
/// the end meanwhile. The weights must survive for B.
#[test]
fn rm_between_a_pulls_reuse_decision_and_its_manifest_keeps_the_reused_blob() {
    let hub = TestHub::start();
    let (a, b) = repos_sharing_weights(&hub);
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/a"]).success();
    let gate = Gate::default();
    hub.set_fault("org/b", "tokenizer_config.json", Fault::Hold(gate.clone()));
    let pull = spawn(&ctx, &["pull", "org/b"]);
    assert!(gate.wait_reached(Duration::from_secs(30)), "the pull of org/b never reached its download");
    // Everything of org/a but the weights, which org/b's pull has pinned (the
    // small files are plain git files: the pull downloads its own copies).
    let only_a: u64 =
        a.iter().filter(|f| !["README.md", "model.safetensors"].contains(&&*f.0)).map(|f| f.1.len() as u64).sum();
    ctx.run(&["rm", "org/a"]).assert(0, "", &format!("removed org/a\nfreed {only_a} B\n"));
    gate.open();
    let out = pull.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ctx.run(&["show", "org/b", "--verify"]).success();
    let originals: BTreeMap<String, Vec<u8>> = b.into_iter().collect();
    assert_store_consistent(&ctx, &originals, "after rm org/a during pull org/b");
    assert!(
        !ctx.store_files().iter().any(|f| f.starts_with("pins/")),
        "pins outlive the pull: {:?}",
        ctx.store_files()
    );
}

/// A blob deleted behind llmctl's back (not by `rm`) while a pull counts on
/// it: the pull records nothing rather than a manifest naming a missing blob.
#[test]
fn a_reused_blob_deleted_by_hand_during_a_pull_fails_it_and_records_nothing() {
    let hub = TestHub::start();
    let (a, _) = repos_sharing_weights(&hub);
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/a"]).success();
    let gate = Gate::default();
    hub.set_fault("org/b", "tokenizer_config.json", Fault::Hold(gate.clone()));
    let pull = spawn(&ctx, &["pull", "org/b"]);
    assert!(gate.wait_reached(Duration::from_secs(30)));
    let weights = &a.iter().find(|f| f.0 == "model.safetensors").unwrap().1;
    std::fs::remove_file(ctx.store().join("blobs").join(format!("sha256-{}", models::sha256_hex(weights)))).unwrap();
    gate.open();
    let out = pull.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with(
            "error: the stored blob of `model.safetensors` disappeared while the pull ran\n\
             hint: something other than llmctl deleted it from the store's `blobs/`; nothing was recorded, run the pull again\n"
        ),
        "{stderr}"
    );
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "org/a\n");
    hub.clear_faults();
    ctx.run(&["pull", "org/b"]).success();
    ctx.run(&["show", "org/b", "--verify"]).success();
}

/// `rm A` and `pull B` (sharing A's weights) started together, many times,
/// `rm` a little later each round, while B's last download is slow: the
/// removal lands before, inside or after the pull's window between deciding
/// to reuse the weights and writing its manifest. Every command succeeds
/// and the store stays consistent.
#[test]
fn concurrent_rm_and_pull_sharing_a_blob_never_lose_it() {
    let hub = TestHub::start();
    let (_, b) = repos_sharing_weights(&hub);
    let originals: BTreeMap<String, Vec<u8>> = b.into_iter().collect();
    hub.set_fault("org/b", "tokenizer_config.json", Fault::Delay(Duration::from_millis(60)));
    let ctx = TestContext::with_hub(&hub);
    let rounds: u64 = std::env::var("LLMCTL_FAULT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    for round in 0..rounds {
        ctx.run(&["pull", "org/a"]).success();
        let pull = spawn(&ctx, &["pull", "org/b"]);
        std::thread::sleep(Duration::from_millis(round * 17 % 90));
        let rm = spawn(&ctx, &["rm", "org/a"]);
        for (what, child) in [("rm org/a", rm), ("pull org/b", pull)] {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round} `{what}`: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert_store_consistent(&ctx, &originals, &format!("round {round}"));
        ctx.run(&["rm", "org/b"]).success();
        assert_eq!(ctx.blob_count(), 0, "round {round}: blobs left after removing both");
    }
}
