//! Issue #13: `pull` refuses, before storing anything, models that `run`
//! could not load: tensors that disagree with `config.json` or are missing,
//! heads that do not divide the hidden size, a vocabulary that disagrees
//! with the embedding or the tokenizer, a missing shard, and GGUF files
//! whose tensors disagree with their metadata.

use crate::support::TestContext;
use crate::support::models;

const SAME_MODEL_HINT: &str = "hint: the files are not a usable model; nothing was stored; check that `config.json`, `tokenizer.json` and the weights come from the same model\n";
const GGUF_HINT: &str = "hint: the files are not a usable model; nothing was stored; convert the model again with a current llama.cpp, or pull another GGUF file of it\n";

/// Imports `files` as `org/bad` and asserts the refusal: exit 1, `stderr`
/// after the `importing` line, and a store with nothing but its lock file.
#[track_caller]
fn assert_refused(files: &[(String, Vec<u8>)], stderr: &str) {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("bad");
    models::write_dir(&dir, files);
    let out = ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/bad"]);
    out.assert(1, "", &format!("importing [ROOT]/bad as org/bad\n{stderr}"));
    assert_nothing_stored(&ctx);
}

#[track_caller]
fn assert_nothing_stored(ctx: &TestContext) {
    // Only the store's lock file, taken to sweep and make the staging area: no manifest, no blob.
    assert_eq!(ctx.store_files(), ["lock"]);
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_refused_naming_both_shapes() {
    let files = models::tiny_llama_repo_with_tensors(7, |shapes| {
        let k = shapes.iter_mut().find(|(n, _)| n == "model.layers.1.self_attn.k_proj.weight").unwrap();
        k.1 = vec![64, 64];
    });
    assert_refused(
        &files,
        &format!(
            "error: cannot record the pulled model\n  \
             caused by: tensor `model.layers.1.self_attn.k_proj.weight` in `model.safetensors` has the wrong shape for `config.json`: expected [32, 64], found [64, 64]\n\
             {SAME_MODEL_HINT}"
        ),
    );
}

#[test]
fn a_missing_tensor_is_refused_naming_it() {
    let files = models::tiny_llama_repo_with_tensors(7, |shapes| {
        shapes.retain(|(n, _)| n != "model.layers.1.mlp.down_proj.weight");
    });
    assert_refused(
        &files,
        &format!(
            "error: cannot record the pulled model\n  \
             caused by: the weights have no tensor `model.layers.1.mlp.down_proj.weight`, which `config.json` calls for\n\
             {SAME_MODEL_HINT}"
        ),
    );
}

#[test]
fn heads_that_do_not_divide_the_hidden_size_are_refused() {
    let mut files = models::tiny_llama_repo(7);
    models::edit_json(&mut files, "config.json", |c| c["num_attention_heads"] = 6.into());
    assert_refused(
        &files,
        "error: cannot record the pulled model\n  \
         caused by: `config.json` has no `head_dim`, and its `hidden_size` of 64 is not a multiple of its 6 attention heads\n\
         hint: the files are not a usable model; nothing was stored\n",
    );
}

#[test]
fn a_vocab_size_below_the_embedding_rows_is_refused() {
    let mut files = models::tiny_llama_repo(7);
    models::edit_json(&mut files, "config.json", |c| c["vocab_size"] = 16.into());
    assert_refused(
        &files,
        &format!(
            "error: cannot record the pulled model\n  \
             caused by: tensor `model.embed_tokens.weight` in `model.safetensors` has the wrong shape for `config.json`: expected [16, 64], found [32, 64]\n\
             {SAME_MODEL_HINT}"
        ),
    );
}

#[test]
fn tokenizer_ids_beyond_the_embedding_are_refused() {
    let mut files = models::tiny_llama_repo(7);
    models::edit_json(&mut files, "tokenizer.json", |t| {
        t["added_tokens"] = serde_json::json!([{"id": 40, "content": "<extra>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}]);
    });
    assert_refused(
        &files,
        &format!(
            "error: cannot record the pulled model\n  \
             caused by: `tokenizer.json` has token id 40, beyond the model's 32 embedding rows (`vocab_size` in `config.json`)\n\
             {SAME_MODEL_HINT}"
        ),
    );
}

#[test]
fn a_shard_the_index_lists_but_the_directory_lacks_is_refused() {
    let mut files = models::tiny_llama_repo(7);
    let index = serde_json::json!({"metadata": {}, "weight_map": {
        "model.embed_tokens.weight": "model.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
    }});
    files.push(("model.safetensors.index.json".into(), serde_json::to_vec(&index).unwrap()));
    assert_refused(
        &files,
        "error: cannot record the pulled model\n  \
         caused by: `model.safetensors.index.json` lists shard `model-00002-of-00002.safetensors`, which is missing\n\
         hint: the files are not a usable model; nothing was stored\n",
    );
}

#[test]
fn a_family_llmctl_does_not_run_is_still_stored_for_show() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("gemma");
    let mut files = models::tiny_llama_repo(7);
    models::edit_json(&mut files, "config.json", |c| c["model_type"] = "gemma".into());
    models::write_dir(&dir, &files);
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/gemma"]).success();
    assert_eq!(ctx.run(&["show", "org/gemma", "--json"]).json()["architecture"], "gemma");
}

/// The real SmolLM2 GGUF with one tensor info edited in its header; the data is untouched.
fn assert_gguf_refused(edit: impl FnOnce(&mut Vec<u8>), stderr: &str) {
    let mut bytes = std::fs::read(models::smollm2_gguf()).unwrap();
    edit(&mut bytes);
    let ctx = TestContext::new();
    let path = ctx.root.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let out = ctx.run(&["pull", path.to_str().unwrap(), "--name", "org/bad"]);
    out.assert(1, "", &format!("importing [ROOT]/bad.gguf as org/bad\n{stderr}"));
    assert_nothing_stored(&ctx);
}

#[test]
fn a_gguf_tensor_of_the_wrong_shape_is_refused() {
    // ffn_down is [1536, 576] (GGUF order); swapped, it keeps its size in bytes.
    assert_gguf_refused(
        |bytes| {
            let (dims, at) = models::gguf_dims(bytes, models::gguf_tensor_info(bytes, "blk.0.ffn_down.weight"));
            assert_eq!(dims, [1536, 576]);
            bytes[at..at + 8].copy_from_slice(&576u64.to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&1536u64.to_le_bytes());
        },
        &format!(
            "error: cannot record the pulled model\n  \
             caused by: `bad.gguf` is not a usable GGUF file\n  \
             caused by: tensor `blk.0.ffn_down.weight` has the wrong shape for the GGUF metadata: expected [1536, 576], found [576, 1536]\n\
             {GGUF_HINT}"
        ),
    );
}

#[test]
fn a_gguf_without_a_tensor_its_loader_reads_is_refused() {
    assert_gguf_refused(
        |bytes| {
            let at = models::gguf_tensor_info(bytes, "blk.3.attn_k.weight");
            // Renamed in place (same length): `blk.3.attn_k.weight` is gone.
            bytes[at + 8 + "blk.3.attn_".len()] = b'K';
        },
        &format!(
            "error: cannot record the pulled model\n  \
             caused by: `bad.gguf` is not a usable GGUF file\n  \
             caused by: the GGUF file has no tensor `blk.3.attn_k.weight`\n\
             {GGUF_HINT}"
        ),
    );
}

#[test]
fn a_hub_pull_of_a_model_run_could_not_load_stores_and_keeps_nothing() {
    let hub = crate::support::hub::TestHub::start();
    hub.add_repo(
        "org/bad",
        models::tiny_llama_repo_with_tensors(7, |shapes| {
            shapes.retain(|(n, _)| n != "model.norm.weight");
        }),
    );
    let ctx = TestContext::with_hub(&hub);
    let out = ctx.run(&["pull", "org/bad"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.ends_with(&format!(
            "error: cannot record the pulled model\n  \
             caused by: the weights have no tensor `model.norm.weight`, which `config.json` calls for\n\
             {SAME_MODEL_HINT}"
        )),
        "{}",
        out.stderr
    );
    // No manifest, no blob, and no downloaded file kept for resuming.
    let kept: Vec<String> =
        ctx.store_files().into_iter().filter(|f| !f.ends_with("lock") && !f.ends_with(".lock")).collect();
    assert!(kept.is_empty(), "{kept:?}");
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "");
}
