//! Issue #16: GGUF models split over several files (llama.cpp's
//! `gguf-split`, `…-00001-of-00003.gguf`) and GGUF files in folders, as
//! bartowski's and unsloth's repositories of large models lay them out:
//! pulled from the hub and imported from disk as one model under one tag,
//! listed, shown and removed whole; missing parts, parts whose headers say
//! another place, and paths that try to leave the repository refused.

use std::path::Path;

use crate::support::TestContext;
use crate::support::hub::TestHub;
use crate::support::models;

const REPO: &str = "org/Tiny-GGUF";
const PARTS_HINT: &str =
    "hint: a split GGUF needs all its parts side by side, named `…-NNNNN-of-NNNNN.gguf` as `gguf-split` writes them\n";
const RECORD_HINT: &str = "hint: the files are not a usable model; nothing was stored; the parts of a split GGUF come from one `gguf-split` run: get them again, all from one revision\n";

/// The name of part `i` (from 1) of 3 in the repository's `Q8_0/` folder.
fn part_name(i: usize) -> String {
    format!("Q8_0/Tiny-Q8_0-{i:05}-of-00003.gguf")
}

/// The hub's files: `parts` under their names, and a README.
fn repo_of(parts: Vec<Vec<u8>>, keep: impl Fn(usize) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("README.md".to_string(), b"# Tiny, split as gguf-split does\n".to_vec())];
    files
        .extend(parts.into_iter().enumerate().filter(|(i, _)| keep(i + 1)).map(|(i, bytes)| (part_name(i + 1), bytes)));
    files
}

fn hub_with(files: Vec<(String, Vec<u8>)>) -> TestHub {
    let hub = TestHub::start();
    hub.add_repo(REPO, files);
    hub
}

/// The line a pull of the three parts of `REPO` starts with.
fn pulling(hub: &TestHub) -> String {
    format!("pulling {REPO} at {} (3 files)\n", &hub.commit(REPO).unwrap()[..12])
}

#[test]
fn a_split_gguf_in_a_folder_pulls_as_one_model_and_lists_shows_and_removes_whole() {
    let parts = models::tiny_gguf_parts(7, 3);
    let total: usize = parts.iter().map(Vec::len).sum();
    let hub = hub_with(repo_of(parts.clone(), |_| true));
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/Tiny-GGUF:Q8_0"]).assert(
        0,
        "",
        &format!("{}stored org/Tiny-GGUF:Q8_0 (gguf, Q8_0, 84.2 kB)\n", pulling(&hub)),
    );
    let list = ctx.run(&["list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!((list[0]["name"].as_str(), list[0]["size"].as_u64()), (Some("org/Tiny-GGUF:Q8_0"), Some(total as u64)));
    let show = ctx.run(&["show", "org/Tiny-GGUF:Q8_0", "--json"]).json();
    let files: Vec<&str> = show["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(files, [part_name(1), part_name(2), part_name(3)]);
    assert_eq!((show["size"].as_u64(), show["gguf"]["parts"].as_u64()), (Some(total as u64), Some(3)));
    // Parameters count the tensors of every part; the shape comes from the first's metadata.
    assert_eq!(show["parameters"], models::tiny_parameter_count());
    assert_eq!((show["layers"].as_u64(), show["kv_heads"].as_u64()), (Some(2), Some(2)));
    let text = ctx.run(&["show", "org/Tiny-GGUF:Q8_0"]).success().stdout.clone();
    assert!(text.contains("  parts           3\n"), "{text}");
    assert!(
        text.ends_with(
            "Files\n  Q8_0/Tiny-Q8_0-00001-of-00003.gguf  17.2 kB\n  Q8_0/Tiny-Q8_0-00002-of-00003.gguf  33.7 kB\n  \
             Q8_0/Tiny-Q8_0-00003-of-00003.gguf  33.4 kB\n"
        ),
        "{text}"
    );
    assert_eq!(stored_parts(&ctx, "org/Tiny-GGUF:Q8_0"), parts);
    ctx.run(&["rm", "org/Tiny-GGUF:Q8_0"]).assert(0, "", "removed org/Tiny-GGUF:Q8_0\nfreed 84.2 kB\n");
    assert_eq!(ctx.blob_count(), 0);
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "");
}

/// The bytes of a stored GGUF model's parts, in order, as the library gives
/// their paths to whoever loads the model.
fn stored_parts(ctx: &TestContext, reference: &str) -> Vec<Vec<u8>> {
    let store = llmctl::store::Store::open(&ctx.store()).unwrap();
    let manifest = store.find(&reference.parse().unwrap()).unwrap();
    let paths = store.model_files(&manifest).gguf_parts().unwrap();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn a_gguf_alone_in_a_folder_takes_its_type_from_the_folder_name() {
    let single = models::tiny_gguf_parts(7, 1).remove(0);
    let hub = hub_with(vec![("Q8_0/model.gguf".into(), single.clone())]);
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/Tiny-GGUF:Q8_0"]).success();
    let show = ctx.run(&["show", "org/Tiny-GGUF:Q8_0", "--json"]).json();
    assert_eq!((show["files"][0]["name"].as_str(), show["gguf"]["parts"].as_u64()), (Some("Q8_0/model.gguf"), Some(1)));
    assert_eq!(stored_parts(&ctx, "org/Tiny-GGUF:Q8_0"), [single]);
}

#[test]
fn a_repository_missing_a_part_is_refused_naming_it_before_any_download() {
    let hub = hub_with(repo_of(models::tiny_gguf_parts(7, 3), |i| i != 2));
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/Tiny-GGUF:Q8_0"]).assert(
        1,
        "",
        &format!(
            "error: `org/Tiny-GGUF` has 2 of the 3 parts of `Q8_0/Tiny-Q8_0-*-of-00003.gguf`; missing: \
             `Q8_0/Tiny-Q8_0-00002-of-00003.gguf`\n{PARTS_HINT}"
        ),
    );
    assert!(hub.requests().iter().all(|r| !r.path.contains("/resolve/")), "{:?}", hub.requests());
    assert_eq!(ctx.blob_count(), 0);
}

#[test]
fn a_part_whose_header_says_another_place_or_tensor_count_is_refused() {
    use candle_core::quantized::gguf_file::Value;
    let misplaced = models::tiny_gguf_parts_with(7, 3, |i, keys| {
        if i == 1 {
            keys[0].1 = Value::U16(2);
        }
    });
    let hub = hub_with(repo_of(misplaced, |_| true));
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/Tiny-GGUF:Q8_0"]).assert(
        1,
        "",
        &format!(
            "{}error: cannot record the pulled model\n  \
             caused by: `Q8_0/Tiny-Q8_0-00002-of-00003.gguf` is not part 2 of 3 of a GGUF model\n  \
             caused by: its header says it is part 3 of 3 (`split.no` 2, `split.count` 3)\n{RECORD_HINT}",
            pulling(&hub)
        ),
    );
    assert_eq!(ctx.blob_count(), 0);

    let miscounted = models::tiny_gguf_parts_with(7, 3, |_, keys| keys[2].1 = Value::I32(21));
    let hub = hub_with(repo_of(miscounted, |_| true));
    let ctx = TestContext::with_hub(&hub);
    ctx.run(&["pull", "org/Tiny-GGUF:Q8_0"]).assert(
        1,
        "",
        &format!(
            "{}error: cannot record the pulled model\n  \
             caused by: the 3 parts `Q8_0/Tiny-Q8_0-00001-of-00003.gguf` … `Q8_0/Tiny-Q8_0-00003-of-00003.gguf` are not one GGUF model\n  \
             caused by: part 1 says the model has 21 tensors (`split.tensors.count`), but its parts hold 20\n{RECORD_HINT}",
            pulling(&hub)
        ),
    );
    assert_eq!(ctx.blob_count(), 0);
}

#[test]
fn a_subfolder_that_tries_to_leave_the_repository_is_refused_before_anything_is_written() {
    let hub = hub_with(repo_of(models::tiny_gguf_parts(7, 3), |_| true));
    let commit = hub.commit(REPO).unwrap();
    for evil in ["Q8_0/../../escape/Tiny-Q8_0-00001-of-00001.gguf", "..\\..\\Q8_0\\Tiny-Q8_0.gguf"] {
        let sibling = serde_json::json!({"rfilename": evil, "size": 4, "lfs": {"sha256": "a".repeat(64), "size": 4}});
        hub.set_listing_override(REPO, serde_json::json!({"sha": commit, "siblings": [sibling]}));
        let ctx = TestContext::with_hub(&hub);
        ctx.run(&["pull", "org/Tiny-GGUF:Q8_0"]).assert(
            1,
            "",
            &format!(
                "error: the hub's listing of `org/Tiny-GGUF` is unusable: file name `{}` is not a safe relative path\n",
                evil.escape_debug()
            ),
        );
        // The locks a pull takes before it lists; no manifest, no blob, no download.
        assert_eq!(ctx.store_files(), ["lock", "locks/pull-org--Tiny-GGUF.lock"]);
    }
}

/// Writes `parts` into `dir` as `Tiny-Q8_0-0000N-of-0000M.gguf`.
fn write_parts(dir: &Path, parts: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, bytes) in parts.iter().enumerate() {
        std::fs::write(dir.join(format!("Tiny-Q8_0-{:05}-of-{:05}.gguf", i + 1, parts.len())), bytes).unwrap();
    }
}

#[test]
fn importing_one_part_imports_every_part_beside_it() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("parts");
    let parts = models::tiny_gguf_parts(7, 3);
    write_parts(&dir, &parts);
    let middle = dir.join("Tiny-Q8_0-00002-of-00003.gguf");
    ctx.run(&["pull", middle.to_str().unwrap()]).assert(
        0,
        "",
        "importing [ROOT]/parts/Tiny-Q8_0-00002-of-00003.gguf as Tiny\nstored Tiny (gguf, Q8_0, 84.2 kB)\n",
    );
    let show = ctx.run(&["show", "Tiny", "--json"]).json();
    let files: Vec<&str> = show["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        files,
        ["Tiny-Q8_0-00001-of-00003.gguf", "Tiny-Q8_0-00002-of-00003.gguf", "Tiny-Q8_0-00003-of-00003.gguf"]
    );
    assert_eq!(stored_parts(&ctx, "Tiny"), parts);

    std::fs::remove_file(dir.join("Tiny-Q8_0-00003-of-00003.gguf")).unwrap();
    ctx.run(&["pull", middle.to_str().unwrap(), "--name", "again"]).assert(
        1,
        "",
        &format!(
            "importing [ROOT]/parts/Tiny-Q8_0-00002-of-00003.gguf as again\n\
             error: `[ROOT]/parts` has 2 of the 3 parts of `Tiny-Q8_0-*-of-00003.gguf`; missing: \
             `Tiny-Q8_0-00003-of-00003.gguf`\n{PARTS_HINT}"
        ),
    );
}

#[test]
fn a_lone_file_whose_header_says_it_is_one_of_several_parts_is_refused() {
    let ctx = TestContext::new();
    let first = models::tiny_gguf_parts(7, 2).remove(0);
    let path = ctx.root.path().join("tiny.gguf");
    std::fs::write(&path, first).unwrap();
    ctx.run(&["pull", path.to_str().unwrap()]).assert(
        1,
        "",
        "importing [ROOT]/tiny.gguf as tiny\n\
         error: cannot record the pulled model\n  \
         caused by: `tiny.gguf` is not a usable GGUF file\n  \
         caused by: its header says it is part 1 of 2 of a split model, whose other parts are not here\n\
         hint: the files are not a usable model; nothing was stored; pull or import every part of the model \
         (`…-00001-of-000NN.gguf` and the rest)\n",
    );
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "");
}

/// The parts' progress on a terminal: one bar for each, and one for all.
#[test]
fn importing_parts_on_a_terminal_draws_the_progress_of_the_whole() {
    let ctx = TestContext::new().env("COLUMNS", "100").env("TERM", "xterm");
    let dir = ctx.root.path().join("parts");
    write_parts(&dir, &models::tiny_gguf_parts(7, 3));
    let first = dir.join("Tiny-Q8_0-00001-of-00003.gguf");
    let terminal = crate::support::pty::Terminal::start(&ctx.command(&["pull", first.to_str().unwrap()]));
    let (code, screen) = terminal.finish();
    assert_eq!(code, 0, "{screen}");
    // Bars are redrawn in place: the last drawing of the whole is complete.
    let whole = screen.rsplit("all 3 files").next().unwrap();
    assert!(whole.trim_start().starts_with("██████████  84.2 kB/84.2 kB"), "{screen}");
    assert!(
        screen.contains("Tiny-Q8_0-00002-of-00003.gguf                    ██████████  33.7 kB/33.7 kB"),
        "{screen}"
    );
}

/// The decoder over a model's GGUF files, as `run` builds it.
fn decoder_over(paths: &[std::path::PathBuf]) -> llmctl::engine::model::Model {
    use llmctl::engine::gguf_weights::{self, GgufWeights, Mode};
    let headers: Vec<_> = paths.iter().map(|p| llmctl::formats::gguf::read_header_from_path(p).unwrap()).collect();
    let config = gguf_weights::config(&headers[0]).unwrap();
    let (dtype, cpu) = (candle_core::DType::F32, candle_core::Device::Cpu);
    let weights = GgufWeights::open(paths, &headers, &config, dtype, &cpu, Mode::Load).unwrap();
    llmctl::engine::model::Model::load(&weights, config, 16).unwrap()
}

#[test]
fn a_split_model_computes_what_the_same_model_whole_computes() {
    use llmctl::engine::kv_cache::{CacheShape, KvCache};
    use llmctl::engine::model::Logits;
    use llmctl::kv_size::{CacheLayout, DenseDtype};
    let ctx = TestContext::new();
    let (whole, split) = (ctx.root.path().join("whole"), ctx.root.path().join("split"));
    write_parts(&whole, &models::tiny_gguf_parts(7, 1));
    write_parts(&split, &models::tiny_gguf_parts(7, 3));
    let logits = |dir: &Path| {
        let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        let model = decoder_over(&paths);
        let cfg = model.config();
        let shape = CacheShape { layers: cfg.layers, kv_heads: cfg.kv_heads, head_dim: cfg.head_dim, capacity: 16 };
        let layout = CacheLayout::Dense(DenseDtype::F32);
        let mut cache = KvCache::new(layout, shape, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        model.forward(&[1, 2, 3, 4], &mut cache, Logits::All).unwrap().to_vec2::<f32>().unwrap()
    };
    let (one, three) = (logits(&whole), logits(&split));
    assert_eq!(one, three, "the parts' tensors must land where the whole file's are");
    assert!(one.iter().flatten().any(|x| *x != 0.0));
}
