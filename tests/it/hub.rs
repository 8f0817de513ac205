//! `llmctl pull` through the real hf-hub client over real HTTP, against a
//! local stand-in for the Hugging Face Hub.

use crate::support::TestContext;
use crate::support::hub::{Fault, TestHub};
use crate::support::models::{self, SMOLLM2_GGUF_NAME, SMOLLM2_GGUF_SIZE};

fn hub_with_tiny() -> TestHub {
    let hub = TestHub::start();
    hub.add_repo("org/tiny", models::tiny_llama_repo(7));
    hub
}

/// The bytes of one file of `hub_with_tiny`'s repository.
fn tiny_file(name: &str) -> Vec<u8> {
    models::tiny_llama_repo(7).into_iter().find(|(n, _)| n == name).unwrap().1
}

/// Where a pull of `org/tiny` keeps the partial download of its LFS file `name`
/// (the folder is made; the file is not).
fn tiny_partial(ctx: &TestContext, name: &str) -> std::path::PathBuf {
    use sha2::Digest as _;
    let sha: String = sha2::Sha256::digest(tiny_file(name)).iter().map(|b| format!("{b:02x}")).collect();
    let downloads = ctx.store().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    downloads.join(format!("org--tiny.sha256-{sha}.part"))
}

fn hub_with_smollm2_gguf() -> TestHub {
    let hub = TestHub::start();
    let gguf = std::fs::read(models::smollm2_gguf()).unwrap();
    hub.add_repo("org/smol-GGUF", vec![("README.md".into(), b"# q4_1\n".to_vec()), (SMOLLM2_GGUF_NAME.into(), gguf)]);
    hub
}

fn downloads_of(hub: &TestHub, file: &str) -> usize {
    hub.requests().iter().filter(|r| r.path.ends_with(file) && r.range.as_deref() != Some("bytes=0-0")).count()
}

#[test]
fn pulls_a_safetensors_repository_at_one_commit() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub);
    let commit = hub.commit("org/tiny").unwrap();
    let out = ctx.run(&["pull", "org/tiny", "--json"]);
    out.success();
    assert!(out.stderr.starts_with(&format!("pulling org/tiny at {} (5 files)\n", &commit[..12])), "{}", out.stderr);
    assert_eq!(out.json()["stored"][0]["name"], "org/tiny");
    let show = ctx.run(&["show", "org/tiny", "--json"]).json();
    assert_eq!(show["source"]["kind"], "hub");
    assert_eq!(show["source"]["commit"], commit);
    assert_eq!(show["format"], "safetensors");
    assert_eq!(show["weight_dtype"], "f32");
    assert_eq!(show["files"].as_array().unwrap().len(), 5);
    // Every file came from the listed commit, not from a moving `main`.
    for r in hub.requests().iter().filter(|r| r.path.contains("/resolve/")) {
        assert!(r.path.contains(&format!("/resolve/{commit}/")), "{}", r.path);
        assert_eq!(r.authorization, None);
    }
    // Nothing is left in the download area once the model is stored.
    assert!(ctx.store_files().iter().all(|f| !f.starts_with("downloads/") && !f.starts_with("staging/")));
}

#[test]
fn a_kv_tag_pull_records_the_tag_on_the_same_blobs_without_downloading_weights_again() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/tiny"]).success();
    let blobs = ctx.blob_count();
    hub.clear_requests();
    let out = ctx.run(&["pull", "org/tiny:kv_int8"]);
    out.success();
    assert!(out.stderr.contains("model.safetensors: already in the store\n"), "{}", out.stderr);
    assert_eq!(downloads_of(&hub, "model.safetensors"), 0);
    assert_eq!(ctx.blob_count(), blobs);
    let list = ctx.run(&["list", "--json"]).json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"org/tiny:kv_int8") && names.contains(&"org/tiny"));
    let quant: Vec<_> = list.as_array().unwrap().iter().map(|e| e["quantization"].clone()).collect();
    assert!(quant.contains(&serde_json::json!("kv_int8")) && quant.contains(&serde_json::Value::Null));
}

#[test]
fn pulls_a_gguf_repository_by_tag_and_by_default() {
    let hub = hub_with_smollm2_gguf();
    let ctx = TestContext::with_hub(&hub);
    let out = ctx.run(&["pull", "org/smol-GGUF"]);
    out.success();
    // #18: one file is "1 file".
    assert!(
        out.stderr.starts_with("pulling org/smol-GGUF at ") && out.stderr.contains(" (1 file)\n"),
        "{}",
        out.stderr
    );
    let show = ctx.run(&["show", "org/smol-GGUF", "--json"]).json();
    assert_eq!((show["format"].as_str(), show["quantization"].as_str()), (Some("gguf"), Some("Q4_1")));
    assert_eq!((show["architecture"].as_str(), show["size"].as_u64()), (Some("llama"), Some(SMOLLM2_GGUF_SIZE)));
    assert_eq!((show["layers"].as_u64(), show["kv_heads"].as_u64()), (Some(30), Some(3)));
    hub.clear_requests();
    ctx.run(&["pull", "org/smol-GGUF:q4_1"]).success();
    assert_eq!(downloads_of(&hub, ".gguf"), 0, "the blob was already stored");
    // Newest first.
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "org/smol-GGUF:Q4_1\norg/smol-GGUF\n");
}

#[test]
fn gguf_tag_errors_list_what_the_repository_has() {
    let hub = hub_with_smollm2_gguf();
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/smol-GGUF:Q8_0"]).assert(
        1,
        "",
        "error: `org/smol-GGUF` has no GGUF file for `Q8_0` (available: Q4_1)\nhint: pick a tag, e.g. `MODEL:Q4_1`\n",
    );
    let out = ctx.run(&["pull", "org/smol-GGUF:kv_int8"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: `kv_int8` is a KV-cache scheme for safetensors models, but `org/smol-GGUF` is a GGUF model"
        ),
        "{}",
        out.stderr
    );
    let out = ctx.run(&["pull", "org/tiny:Q4_K_M"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(ctx.blob_count(), 0);
}

#[test]
fn weight_tags_on_a_safetensors_repository_are_refused() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub);
    let out = ctx.run(&["pull", "org/tiny:Q4_K_M"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("error: `Q4_K_M` is a GGUF weight type, but `org/tiny` is a safetensors model"),
        "{}",
        out.stderr
    );
}

/// Also when the hub hides a missing repository behind a 401, as the real one does.
#[test]
fn unknown_repositories_are_reported_with_a_hint() {
    for hide in [false, true] {
        let hub = TestHub::start();
        hub.set_hide_missing(hide);
        TestContext::with_hub(&hub).run(&["pull", "org/missing"]).assert(
            1,
            "",
            "error: repository `org/missing` was not found on the hub\n\
             hint: check the spelling; a private repository also needs `HF_TOKEN` set to a token with access\n",
        );
    }
}

#[test]
fn hf_token_is_sent_but_never_printed_or_stored() {
    let hub = hub_with_tiny();
    hub.require_token("hf_secret_value");
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/tiny"]).assert(
        1,
        "",
        "error: the hub refused access to `org/tiny` (HTTP 401)\nhint: set `HF_TOKEN` to a token that has access to this repository\n",
    );
    TestContext::with_hub(&hub).env("HF_TOKEN", "hf_wrong").run(&["pull", "org/tiny"]).assert(
        1,
        "",
        "error: the hub refused access to `org/tiny` (HTTP 401)\n\
         hint: the token in `HF_TOKEN` (or from `huggingface-cli login`) was refused: check that it is valid and has access\n",
    );
    let ctx = ctx.env("HF_TOKEN", "hf_secret_value");
    let out = ctx.run(&["pull", "org/tiny", "--json"]);
    out.success();
    assert!(!out.stdout.contains("hf_secret") && !out.stderr.contains("hf_secret"));
    assert!(hub.requests().iter().any(|r| r.authorization.as_deref() == Some("Bearer hf_secret_value")));
    for file in ctx.store_files() {
        let bytes = std::fs::read(ctx.store().join(&file)).unwrap();
        assert!(!bytes.windows(9).any(|w| w == b"hf_secret"), "token found in {file}");
    }
}

/// Retries wait this long (then doubled) in tests, not the default 500 ms.
const FAST_RETRY: (&str, &str) = ("LLMCTL_RETRY_DELAY_MS", "1");

#[test]
fn a_corrupted_download_is_deleted_retried_and_nothing_is_recorded() {
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "model.safetensors", Fault::CorruptByteAt(1000));
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let out = ctx.run(&["pull", "org/tiny"]);
    assert_eq!(out.code, 1);
    // Every try got the same wrong byte: four downloads, three retries announced.
    assert_eq!(out.stderr.matches("retrying (attempt").count(), 3, "{}", out.stderr);
    assert_eq!(downloads_of(&hub, "model.safetensors"), 4);
    assert!(out.stderr.contains("error: `model.safetensors` failed verification: expected sha256 "), "{}", out.stderr);
    assert!(
        out.stderr.ends_with("hint: the bad bytes were deleted; pull again to download them afresh\n"),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.run(&["list", "--json"]).stdout, "[]\n");
    assert_eq!(ctx.blob_count(), 0);
    hub.clear_faults();
    ctx.run(&["pull", "org/tiny"]).success();
}

#[test]
fn an_interrupted_download_is_retried_from_the_bytes_on_disk() {
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "model.safetensors", Fault::DropAfter(20_000));
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let out = ctx.run(&["pull", "org/tiny"]);
    out.success();
    assert!(
        out.stderr.contains("model.safetensors: downloading `org/tiny/model.safetensors` failed: "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("; retrying (attempt 2 of 4)\n"), "{}", out.stderr);
    let ranges: Vec<_> = hub
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("model.safetensors"))
        .filter_map(|r| r.range.clone())
        .collect();
    assert!(ranges.contains(&"bytes=20000-".to_string()), "{ranges:?}");
}

#[test]
fn transient_hub_errors_are_retried_and_persistent_ones_reported() {
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "model.safetensors", Fault::Status { code: 429, times: 1 });
    hub.set_fault("org/tiny", "config.json", Fault::Status { code: 503, times: 2 });
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let out = ctx.run(&["pull", "org/tiny"]);
    out.success();
    assert_eq!(out.stderr.matches("retrying (attempt").count(), 3, "{}", out.stderr);

    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "config.json", Fault::Status { code: 500, times: 10 });
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let out = ctx.run(&["pull", "org/tiny"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.ends_with(
        "error: the hub answered HTTP 500 for `org/tiny/config.json`\nhint: pull again: the download resumes from the bytes already received\n"
    ), "{}", out.stderr);
    assert_eq!(downloads_of(&hub, "config.json"), 4);
    // A 404 is an answer, not a hiccup: no retry.
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "config.json", Fault::Status { code: 404, times: 10 });
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let out = ctx.run(&["pull", "org/tiny"]);
    assert_eq!((out.code, out.stderr.contains("retrying")), (1, false), "{}", out.stderr);
    assert_eq!(ctx.blob_count(), 0);
}

#[test]
fn a_stalled_transfer_is_abandoned_and_the_next_pull_completes() {
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "model.safetensors", Fault::Delay(std::time::Duration::from_secs(20)));
    let ctx = TestContext::with_hub(&hub).env("LLMCTL_STALL_TIMEOUT_MS", "300");
    let started = std::time::Instant::now();
    let out = ctx.run(&["pull", "org/tiny"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("error: the download of `org/tiny/model.safetensors` stalled: no data for 0."),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with("hint: pull again: the download resumes from the bytes already received\n"),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.blob_count(), 0);
    hub.clear_faults();
    ctx.run(&["pull", "org/tiny"]).success();
}

#[test]
fn hostile_listings_are_refused_before_anything_is_written() {
    let hub = hub_with_tiny();
    let commit = hub.commit("org/tiny").unwrap();
    hub.set_listing_override(
        "org/tiny",
        serde_json::json!({"sha": commit, "siblings": [{"rfilename": "config.json"}, {"rfilename": "../../etc/passwd"}]}),
    );
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/tiny"]).assert(
        1,
        "",
        "error: the hub's listing of `org/tiny` is unusable: file name `../../etc/passwd` is not a safe relative path\n",
    );
    assert_eq!(ctx.blob_count(), 0);
    hub.set_listing_override(
        "org/tiny",
        serde_json::json!({"sha": commit, "siblings": [{"rfilename": "config.json", "blobId": "../x"}]}),
    );
    ctx.run(&["pull", "org/tiny"]).assert(
        1,
        "",
        "error: the hub's listing of `org/tiny` is unusable: blob id `../x` of `config.json` is not a 40-digit hex id\n",
    );
}

#[test]
fn a_listing_without_checksums_is_refused_before_downloading() {
    let hub = hub_with_tiny();
    let commit = hub.commit("org/tiny").unwrap();
    let sibling = |name: &str| serde_json::json!({"rfilename": name, "size": tiny_file(name).len()});
    hub.set_listing_override(
        "org/tiny",
        serde_json::json!({"sha": commit, "siblings": [sibling("config.json"), sibling("model.safetensors"), sibling("tokenizer.json")]}),
    );
    let ctx = TestContext::with_hub(&hub);
    let out = ctx.run(&["pull", "org/tiny"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.ends_with(
            "error: the hub lists no checksum for `config.json` in `org/tiny`, so it cannot be verified\n\
         hint: the hub is not answering as the Hugging Face Hub does; check `HF_ENDPOINT`\n"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(hub.downloads("org/tiny", "config.json"), 0);
    assert_eq!(ctx.blob_count(), 0);
}

#[test]
fn a_file_outside_lfs_is_checked_against_its_git_blob_id() {
    let hub = hub_with_tiny();
    // tokenizer.json is small and not in LFS: the listing gives no sha256 for it.
    hub.set_fault("org/tiny", "tokenizer.json", Fault::CorruptByteAt(10));
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let out = ctx.run(&["pull", "org/tiny"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("error: `tokenizer.json` failed verification: expected git blob "), "{}", out.stderr);
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "");
}

#[test]
fn a_second_pull_of_one_repository_waits_and_says_so() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub);
    let locks = ctx.store().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join("pull-org--tiny.lock"))
        .unwrap();
    lock.lock().unwrap();
    let child = ctx
        .command(&["pull", "org/tiny"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    lock.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for another llmctl that is pulling org/tiny..."), "{stderr}");
}

#[test]
fn a_repository_without_a_tokenizer_is_refused() {
    let hub = TestHub::start();
    let mut files = models::tiny_llama_repo(1);
    files.retain(|(n, _)| n != "tokenizer.json");
    hub.add_repo("org/notok", files);
    TestContext::with_hub(&hub).run(&["pull", "org/notok"]).assert(
        1,
        "",
        "error: `org/notok` has safetensors weights but no `tokenizer.json`\n",
    );
}

#[test]
fn an_unreachable_hub_names_the_endpoint_after_retrying() {
    let out = TestContext::new().env(FAST_RETRY.0, FAST_RETRY.1).run(&["pull", "org/tiny"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with(
            "listing: cannot reach the hub at `http://127.0.0.1:9`: Connection Failed: Connection refused"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("retrying (attempt").count(), 3, "{}", out.stderr);
    assert!(out.stderr.contains("\nerror: cannot reach the hub at `http://127.0.0.1:9`: Connection Failed: Connection refused (os error 111)\n\
         hint: check the network, or point `HF_ENDPOINT` at a reachable mirror; partial downloads are kept\n"), "{}", out.stderr);
}

/// A full disk, staged by pointing the partial download at `/dev/full`
/// (every write fails with ENOSPC): a clean error naming the download folder,
/// no retries, nothing recorded, and a later pull completes.
#[test]
fn a_full_disk_is_a_clean_error_naming_the_folder() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let part = tiny_partial(&ctx, "model.safetensors");
    std::os::unix::fs::symlink("/dev/full", &part).unwrap();
    let out = ctx.run(&["pull", "org/tiny"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "error: no space left on the disk of `[STORE]/downloads` while downloading `org/tiny/model.safetensors`\n"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: free space on that disk, or point `LLMCTL_HOME` at a store on a larger one"),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "");
    std::fs::remove_file(&part).unwrap();
    ctx.run(&["pull", "org/tiny"]).success();
}

// ---------------------------------------------------------------------------
// Issue #12: repositories laid out as on the Hub, and hubs that misbehave.

use crate::support::hub::ListingFault;

/// Files a test can plant outside the store, where a hostile header would aim.
fn plant_bait(ctx: &TestContext) -> std::path::PathBuf {
    let bait = ctx.home().join(".bashrc");
    std::fs::create_dir_all(ctx.home()).unwrap();
    std::fs::write(&bait, b"export PATH=/usr/bin\n").unwrap();
    bait
}

fn names_of(show: &serde_json::Value) -> Vec<String> {
    show["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect()
}

/// Only the selected files are ever asked for, dot-files, README, folders and other formats never.
fn resolved_files(hub: &TestHub) -> std::collections::BTreeSet<String> {
    hub.requests()
        .iter()
        .filter_map(|r| r.path.split_once("/resolve/").map(|(_, rest)| rest.split_once('/').unwrap().1.to_string()))
        .collect()
}

#[test]
fn a_repository_laid_out_like_smollm2_on_the_hub_pulls_its_model_files_and_runs() {
    let dir = crate::support::smollm2::smollm2_dir("bf16");
    let model_files: Vec<(String, Vec<u8>)> =
        ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
            .iter()
            .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
            .collect();
    let hub = TestHub::start();
    hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct", models::smollm2_like_safetensors_repo(model_files));
    let ctx = TestContext::with_hub(&hub);
    // The README's first command, as written (against the stand-in endpoint).
    ctx.run(&["pull", "HuggingFaceTB/SmolLM2-135M-Instruct"]).success();
    let show = ctx.run(&["show", "HuggingFaceTB/SmolLM2-135M-Instruct", "--json"]).json();
    let expected =
        ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];
    assert_eq!(names_of(&show), expected);
    assert_eq!(resolved_files(&hub), expected.iter().map(|s| s.to_string()).collect());
    let out = ctx.run(&[
        "run",
        "HuggingFaceTB/SmolLM2-135M-Instruct:kv_int8",
        "The capital of France is",
        "--raw",
        "--max-tokens",
        "3",
    ]);
    out.success();
    assert!(out.stdout.starts_with(" Paris."), "{}", out.stdout);
}

#[test]
fn a_repository_laid_out_like_bartowskis_ggufs_pulls_the_one_file_asked_for_and_runs() {
    let gguf = std::fs::read(models::smollm2_gguf()).unwrap();
    let hub = TestHub::start();
    let name = "SmolLM2-135M-Instruct-Q4_1.gguf";
    hub.add_repo("bartowski/SmolLM2-135M-Instruct-GGUF", models::bartowski_like_gguf_repo((name.into(), gguf)));
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1"]).success();
    let show = ctx.run(&["show", "bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1", "--json"]).json();
    assert_eq!(names_of(&show), [name]);
    assert_eq!(resolved_files(&hub), [name.to_string()].into());
    let out = ctx.run(&[
        "run",
        "bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1",
        "The capital of France is",
        "--raw",
        "--max-tokens",
        "3",
    ]);
    out.success();
    assert!(out.stdout.starts_with(" Paris."), "{}", out.stdout);
    // Without a tag the default is Q4_K_M, here a broken file: refused, nothing stored, nothing left.
    let out = ctx.run(&["pull", "bartowski/SmolLM2-135M-Instruct-GGUF"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("error: cannot record the pulled model\n"), "{}", out.stderr);
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1\n");
    assert!(ctx.store_files().iter().all(|f| !f.starts_with("downloads/")), "{:?}", ctx.store_files());
}

/// Each hostile behaviour: a pull against it, then checks that nothing
/// outside the store changed, and that an honest hub then pulls cleanly.
fn assert_contained(ctx: &TestContext, hub: &TestHub, before: &std::collections::BTreeMap<String, String>) {
    assert_eq!(&ctx.outside_store(), before, "something outside the store changed");
    hub.clear_faults();
    ctx.run(&["pull", "org/tiny"]).success();
    assert_eq!(&ctx.outside_store(), before, "something outside the store changed");
    let leftovers: Vec<String> =
        ctx.store_files().into_iter().filter(|f| f.starts_with("downloads/") || f.starts_with("staging/")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn etags_naming_paths_outside_the_store_are_never_used_as_paths() {
    for etag in ["\"{BAIT}\"", "\"../../../../home/.bashrc\"", "\"/etc/passwd\""] {
        let hub = hub_with_tiny();
        let ctx = TestContext::with_hub(&hub);
        let bait = plant_bait(&ctx);
        let etag = etag.replace("{BAIT}", &bait.display().to_string());
        for file in ["model.safetensors", "config.json"] {
            hub.set_header_override("org/tiny", file, "ETag", &etag);
            hub.set_header_override("org/tiny", file, "X-Linked-Etag", &etag);
        }
        let before = ctx.outside_store();
        ctx.run(&["pull", "org/tiny"]).success();
        assert_eq!(std::fs::read(&bait).unwrap(), b"export PATH=/usr/bin\n");
        assert_contained(&ctx, &hub, &before);
    }
}

#[test]
fn a_commit_header_that_climbs_out_of_the_store_is_ignored() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub);
    plant_bait(&ctx);
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
        hub.set_header_override("org/tiny", file, "X-Repo-Commit", "../../../../x");
    }
    let before = ctx.outside_store();
    let out = ctx.run(&["pull", "org/tiny", "--json"]);
    out.success();
    assert_eq!(ctx.run(&["show", "org/tiny", "--json"]).json()["source"]["commit"], hub.commit("org/tiny").unwrap());
    assert_contained(&ctx, &hub, &before);
}

#[test]
fn a_listing_that_never_answers_times_out_is_retried_and_fails_clearly() {
    let hub = hub_with_tiny();
    hub.set_listing_fault("org/tiny", ListingFault::Hang);
    let ctx = TestContext::with_hub(&hub).env("LLMCTL_STALL_TIMEOUT_MS", "300").env(FAST_RETRY.0, FAST_RETRY.1);
    let before = ctx.outside_store();
    let started = std::time::Instant::now();
    let out = ctx.run(&["pull", "org/tiny"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.matches("listing: the listing of `org/tiny` stalled: no data for 0.3 s; retrying").count(),
        3,
        "{}",
        out.stderr
    );
    assert!(out.stderr.ends_with(
        "error: the listing of `org/tiny` stalled: no data for 0.3 s\nhint: pull again: the download resumes from the bytes already received\n"
    ), "{}", out.stderr);
    assert_contained(&ctx, &hub, &before);
}

#[test]
fn a_body_longer_than_listed_stops_at_the_listed_size_and_is_deleted() {
    for fault in [Fault::EndlessBody, Fault::OverlongBody { extra: 64 << 20, content_length: true }] {
        let hub = hub_with_tiny();
        hub.set_fault("org/tiny", "model.safetensors", fault.clone());
        let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
        let before = ctx.outside_store();
        let started = std::time::Instant::now();
        let out = ctx.run(&["pull", "org/tiny"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{fault:?} took {:?}", started.elapsed());
        assert_eq!(out.code, 1, "{fault:?}: {}", out.stderr);
        let size = tiny_file("model.safetensors").len();
        assert!(
            out.stderr.ends_with(&format!(
                "error: the hub sent more than the {size} bytes it listed for `org/tiny/model.safetensors`\n\
             hint: the partial file was deleted; if this repeats, the hub or a proxy in between is misbehaving\n"
            )),
            "{fault:?}: {}",
            out.stderr
        );
        assert_eq!(hub.downloads("org/tiny", "model.safetensors"), 4, "{fault:?}");
        // The weights' partial file is gone (smaller files that completed stay, to be reused).
        assert!(ctx.store_files().iter().all(|f| !f.contains(".sha256-")), "{:?}", ctx.store_files());
        assert_contained(&ctx, &hub, &before);
    }
}

#[test]
fn listing_errors_are_retried_honouring_retry_after() {
    for code in [500, 503, 429] {
        let hub = hub_with_tiny();
        hub.set_listing_fault("org/tiny", ListingFault::Status { code, times: 2, retry_after: None });
        let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
        let out = ctx.run(&["pull", "org/tiny"]);
        out.success();
        assert_eq!(out.stderr.matches("listing: ").count(), 2, "{code}: {}", out.stderr);
    }
    let hub = hub_with_tiny();
    hub.set_listing_fault("org/tiny", ListingFault::Status { code: 503, times: 1, retry_after: Some(1) });
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let started = std::time::Instant::now();
    let out = ctx.run(&["pull", "org/tiny"]);
    out.success();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After: 1 was not waited out");
    assert!(
        out.stderr.starts_with("listing: the hub answered HTTP 503 for `org/tiny`; retrying (attempt 2 of 4)\n"),
        "{}",
        out.stderr
    );
    // A wait longer than llmctl will sit through is said, not slept.
    let hub = hub_with_tiny();
    hub.set_listing_fault("org/tiny", ListingFault::Status { code: 429, times: 1, retry_after: Some(3600) });
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    ctx.run(&["pull", "org/tiny"]).assert(
        1,
        "",
        "error: the hub is rate-limiting requests for `org/tiny` (HTTP 429); it asks to wait 3600 s\n\
         hint: wait a while and pull again; partial downloads are kept\n",
    );
    // File downloads honour it too.
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "model.safetensors", Fault::StatusRetryAfter { code: 503, times: 1, seconds: 1 });
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    let started = std::time::Instant::now();
    ctx.run(&["pull", "org/tiny"]).success();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

/// A partial download of `file` left as if an earlier pull was cut off after `len` bytes.
fn leave_partial(ctx: &TestContext, file: &str, len: usize) {
    std::fs::write(tiny_partial(ctx, file), &tiny_file(file)[..len]).unwrap();
}

#[test]
fn a_server_that_ignores_range_gets_a_fresh_full_download_that_verifies() {
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "model.safetensors", Fault::IgnoreRange);
    let ctx = TestContext::with_hub(&hub);
    leave_partial(&ctx, "model.safetensors", 20_000);
    let before = ctx.outside_store();
    let out = ctx.run(&["pull", "org/tiny"]);
    out.success();
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
    let asked: Vec<_> =
        hub.requests().iter().filter(|r| r.path.contains("cdn-lfs")).map(|r| (r.range.clone(), r.status)).collect();
    assert_eq!(asked, [(Some("bytes=20000-".to_string()), 200)]);
    assert_contained(&ctx, &hub, &before);
}

#[test]
fn a_partial_answer_for_another_range_is_deleted_and_downloaded_afresh() {
    let hub = hub_with_tiny();
    hub.set_fault("org/tiny", "model.safetensors", Fault::BadContentRange);
    let ctx = TestContext::with_hub(&hub).env(FAST_RETRY.0, FAST_RETRY.1);
    leave_partial(&ctx, "model.safetensors", 20_000);
    let out = ctx.run(&["pull", "org/tiny"]);
    out.success();
    assert!(out.stderr.contains(
        "model.safetensors: the hub answered another part of `org/tiny/model.safetensors` than was asked for (asked from byte 20000, got `bytes 0-"
    ), "{}", out.stderr);
    let ranges: Vec<_> =
        hub.requests().iter().filter(|r| r.path.contains("cdn-lfs")).map(|r| r.range.clone()).collect();
    assert_eq!(ranges, [Some("bytes=20000-".to_string()), None]);
}

#[test]
fn a_partial_file_longer_than_the_listing_is_started_over() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub);
    let mut too_long = tiny_file("model.safetensors");
    too_long.extend_from_slice(b"trailing junk");
    std::fs::write(tiny_partial(&ctx, "model.safetensors"), too_long).unwrap();
    ctx.run(&["pull", "org/tiny"]).success();
    let ranges: Vec<_> =
        hub.requests().iter().filter(|r| r.path.contains("cdn-lfs")).map(|r| r.range.clone()).collect();
    assert_eq!(ranges, [None]);
}

#[test]
fn an_unusable_thing_where_the_partial_file_goes_is_replaced() {
    let hub = hub_with_tiny();
    let ctx = TestContext::with_hub(&hub);
    let part = tiny_partial(&ctx, "model.safetensors");
    std::fs::create_dir_all(part.join("junk")).unwrap();
    ctx.run(&["pull", "org/tiny"]).success();
    assert!(!part.exists());
}

#[test]
fn gated_repositories_say_what_to_do_without_and_with_the_wrong_token() {
    let hub = hub_with_tiny();
    hub.set_gated("org/tiny", "hf_granted");
    let ctx = TestContext::with_hub(&hub);
    let out = ctx.run(&["pull", "org/tiny"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.ends_with(
        "error: `org/tiny` is a gated repository and the hub refused access (HTTP 401)\n\
         hint: accept the license at [HUB]/org/tiny, then set `HF_TOKEN` to a token of that account (or log in with `huggingface-cli login`)\n"
    ), "{}", out.stderr);
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
    let out = TestContext::with_hub(&hub).env("HF_TOKEN", "hf_other").run(&["pull", "org/tiny"]);
    assert!(
        out.stderr.ends_with(
            "error: `org/tiny` is a gated repository and the hub refused access (HTTP 403)\n\
         hint: the token's account has not been granted access: accept the license at [HUB]/org/tiny and pull again\n"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.blob_count(), 0);
    let granted = TestContext::with_hub(&hub).env("HF_TOKEN", "hf_granted");
    granted.run(&["pull", "org/tiny"]).success();
}

#[test]
fn revision_pulls_a_branch_tag_or_commit_and_records_it() {
    let hub = hub_with_tiny();
    hub.add_revision("org/tiny", "v1.0", models::tiny_llama_repo(8));
    let v1 = hub.commit_of("org/tiny", "v1.0").unwrap();
    assert_ne!(v1, hub.commit("org/tiny").unwrap());
    let ctx = TestContext::with_hub(&hub);
    let out = ctx.run(&["pull", "org/tiny", "--revision", "v1.0"]);
    out.success();
    assert!(out.stderr.starts_with(&format!("pulling org/tiny at {} (5 files)\n", &v1[..12])), "{}", out.stderr);
    let show = ctx.run(&["show", "org/tiny", "--json"]).json();
    assert_eq!(
        (show["source"]["commit"].as_str(), show["source"]["revision"].as_str()),
        (Some(v1.as_str()), Some("v1.0"))
    );
    let text = ctx.run(&["show", "org/tiny"]).stdout;
    assert!(text.contains(&format!("hub org/tiny @ {} (v1.0)", &v1[..12])), "{text}");
    assert!(
        hub.requests()
            .iter()
            .all(|r| !r.path.contains("/resolve/") || r.path.contains(&v1) || r.path.contains("cdn-lfs"))
    );
    // A commit id pulls that commit.
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/tiny", "--revision", &v1]).success();
    assert_eq!(ctx.run(&["show", "org/tiny", "--json"]).json()["source"]["commit"], v1);
    ctx.run(&["pull", "org/tiny", "--revision", "v9"]).assert(
        1,
        "",
        "error: `org/tiny` has no branch, tag or commit `v9`\nhint: check the spelling of `--revision`; without it llmctl pulls the `main` branch\n",
    );
}

#[test]
fn a_repository_with_only_a_sentencepiece_tokenizer_says_what_llmctl_reads() {
    let hub = TestHub::start();
    let mut files = models::tiny_llama_repo(1);
    files.retain(|(n, _)| n != "tokenizer.json");
    files.push(("tokenizer.model".into(), vec![0x0a, 0x05, b'h', b'e', b'l', b'l', b'o']));
    hub.add_repo("org/spm", files);
    TestContext::with_hub(&hub).run(&["pull", "org/spm"]).assert(
        1,
        "",
        "error: `org/spm` has only a SentencePiece `tokenizer.model`, and llmctl reads the tokenizer from `tokenizer.json`\n\
         hint: save the tokenizer with transformers (`AutoTokenizer.from_pretrained(REPO).save_pretrained(DIR)` writes `tokenizer.json`) and import DIR with `llmctl pull ./DIR`, or pull a GGUF of the model\n",
    );
}

/// Issue #18: `run` of a model not in the store pulls it first (as `ollama
/// run`), saying so; a `:kv_*` tag is pulled and recorded as `pull` does;
/// `--no-pull` refuses without a request.
#[test]
fn run_pulls_a_missing_model_first_unless_no_pull() {
    let hub = TestHub::start();
    hub.add_repo("org/tiny", models::tiny_llama_repo(7));
    let ctx = TestContext::with_hub(&hub);
    let refused = ctx.run(&["run", "org/tiny", "--no-pull", "--raw", "w3"]);
    refused.assert(
        2,
        "",
        "error: model `org/tiny` is not in the store\nhint: run `llmctl pull org/tiny` first, or see `llmctl list`\n",
    );
    assert!(hub.requests().is_empty(), "--no-pull asked the hub: {:?}", hub.requests());
    let out = ctx.run(&["run", "org/tiny:kv_int8", "--raw", "--max-tokens", "2", "w3"]);
    out.success();
    let stderr: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(stderr[0], "`org/tiny:kv_int8` is not in the store: pulling it", "{}", out.stderr);
    assert!(stderr.iter().any(|l| l.starts_with("stored org/tiny:kv_int8 (safetensors, kv_int8, ")), "{}", out.stderr);
    assert!(
        stderr.iter().any(|l| l.starts_with("running org/tiny:kv_int8 on cpu (KV cache: kv_int8")),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "org/tiny\norg/tiny:kv_int8\n");
    // Stored now: the next run pulls nothing.
    hub.clear_requests();
    let again = ctx.run(&["run", "org/tiny", "--raw", "--max-tokens", "2", "w3"]);
    assert!(!again.success().stderr.contains("pulling"), "{}", again.stderr);
    assert!(hub.requests().is_empty());
    // A GGUF weight tag on a safetensors repository: `pull`'s own error.
    let gguf = ctx.run(&["run", "org/other:Q4_K_M", "--raw", "w3"]);
    assert_ne!(gguf.code, 0);
    assert!(gguf.stderr.starts_with("`org/other:Q4_K_M` is not in the store: pulling it\n"), "{}", gguf.stderr);
}
