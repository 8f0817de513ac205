//! `bench` transcripts on the CPU: each scheme's speed, memory and quality
//! numbers on the tiny model (and SmolLM2's GGUF), its table, and its errors.

use crate::cli::{ctx_with_smollm2_gguf, ctx_with_tiny_safetensors};

/// Bytes per token of the tiny model's caches: 2 layers × K,V × 2 KV heads × 16 values,
/// at 4 bytes (f32) or 1 byte plus a 4-byte scale per (token, layer, K/V, head).
const TINY_F32_BYTES_PER_TOKEN: u64 = 2 * 2 * 2 * 16 * 4;
const TINY_QUANTIZED_BYTES_PER_TOKEN: u64 = 2 * 2 * 2 * (16 + 4);

#[test]
fn bench_measures_each_scheme_at_each_context_and_scores_a_text() {
    let ctx = ctx_with_tiny_safetensors();
    let text = ctx.root.path().join("text.txt");
    std::fs::write(&text, (0..300).map(|i| format!("w{}", 3 + (i * 7) % 60)).collect::<Vec<_>>().join(" ")).unwrap();
    let out = ctx.run(&[
        "bench",
        "org/tiny",
        "--ctx",
        "128,64",
        "--gen",
        "4",
        "--device",
        "cpu",
        "--text",
        text.to_str().unwrap(),
        "--json",
    ]);
    let v = out.success().json();
    assert_eq!(v["device"], "cpu");
    let speed = v["speed"].as_array().unwrap();
    let cases: Vec<(String, u64)> =
        speed.iter().map(|r| (r["kv"].as_str().unwrap().to_string(), r["context"].as_u64().unwrap())).collect();
    let want: Vec<(String, u64)> =
        ["f32", "kv_int8", "kv_fp8"].iter().flat_map(|k| [64, 128].map(|c| (k.to_string(), c))).collect();
    assert_eq!(cases, want, "scheme-major, contexts ascending");
    for r in speed {
        let per_token = if r["kv"] == "f32" { TINY_F32_BYTES_PER_TOKEN } else { TINY_QUANTIZED_BYTES_PER_TOKEN };
        assert_eq!(r["kv_bytes_per_token"], per_token);
        assert_eq!(r["kv_cache_bytes"].as_u64().unwrap(), per_token * r["context"].as_u64().unwrap());
        assert_eq!(r["prompt_tokens"].as_u64().unwrap() + 4, r["context"].as_u64().unwrap());
        for key in ["prefill_tokens_per_s", "decode_tokens_per_s"] {
            let rate = r[key].as_f64().unwrap();
            assert!(rate.is_finite() && rate > 0.0, "{key}: {rate}");
        }
        let step = |key: &str| r["decode_step_ms"][key].as_f64().unwrap_or_else(|| panic!("decode_step_ms.{key}: {r}"));
        let (median, p90, p99, max) = (step("median"), step("p90"), step("p99"), step("max"));
        assert!(0.0 < median && median <= p90 && p90 <= p99 && p99 <= max && max.is_finite(), "{r}");
        // Host memory would hold far more than the tiny model's 256 positions: the model is the limit (#18).
        assert_eq!((r["max_context_fits"].as_u64(), r["fits_limit"].as_str()), (Some(256), Some("model")), "{r}");
    }
    let quality = v["quality"].as_array().unwrap();
    let kinds: Vec<&str> = quality.iter().map(|q| q["kv"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["f32", "kv_int8", "kv_fp8"]);
    // The text fits the tiny model's 256-token context whole: 300 words are cut to 256.
    assert!(out.stderr.contains("scoring the first 256 of the text's 300 tokens"), "{}", out.stderr);
    for q in quality {
        assert_eq!(q["tokens"], 255);
        let (nll, kl, agree) =
            (q["mean_nll"].as_f64().unwrap(), q["mean_kl"].as_f64().unwrap(), q["top1_agreement"].as_f64().unwrap());
        assert!((q["perplexity"].as_f64().unwrap() - nll.exp()).abs() < 1e-9);
        assert!((q["delta_nll"].as_f64().unwrap() - (nll - quality[0]["mean_nll"].as_f64().unwrap())).abs() < 1e-12);
        assert!(kl >= 0.0 && (0.0..=1.0).contains(&agree), "{q}");
    }
    assert_eq!((quality[0]["mean_kl"].as_f64(), quality[0]["top1_agreement"].as_f64()), (Some(0.0), Some(1.0)));
}

#[test]
fn bench_prints_a_table_for_people() {
    let ctx = ctx_with_tiny_safetensors();
    let out = ctx.run(&["bench", "org/tiny:kv_fp8", "--ctx", "32", "--gen", "2", "--device", "cpu"]);
    out.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "org/tiny:kv_fp8 on cpu");
    assert!(
        lines[2].split_whitespace().eq([
            "KV",
            "CONTEXT",
            "PREFILL",
            "TOK/S",
            "TTFT",
            "DECODE",
            "TOK/S",
            "STEP",
            "MS",
            "P50/P99/MAX",
            "E2E",
            "PEAK",
            "MEMORY",
            "KV",
            "CACHE",
            "FITS",
            "(TOKENS)"
        ]),
        "{}",
        lines[2]
    );
    // The tag's scheme against the unquantized cache, nothing else.
    let kinds: Vec<&str> = lines[3..].iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(kinds, ["f32", "kv_fp8"]);
    // The unquantized row has no "(…×)" after its decode rate: its words are KV, CONTEXT, the
    // prefill rate, TTFT's number and unit, the decode rate, `median/p99/max`, E2E's number and unit.
    let words: Vec<&str> = lines[3].split_whitespace().collect();
    let steps: Vec<f64> = words[6].split('/').map(|t| t.parse().unwrap()).collect();
    assert!(steps.len() == 3 && steps[0] <= steps[1] && steps[1] <= steps[2], "{}", lines[3]);
    let seconds = |number: &str, unit: &str| {
        number.parse::<f64>().unwrap()
            * if unit == "s" {
                1.0
            } else {
                assert_eq!(unit, "ms");
                1e-3
            }
    };
    let (ttft, e2e) = (seconds(words[3], words[4]), seconds(words[7], words[8]));
    assert!(0.0 < ttft && ttft <= e2e, "{}", lines[3]);
    // Memory would hold more than the model attends to: the column says so (#18).
    assert!(lines[3..].iter().all(|l| l.ends_with("256 (model limit)")), "{}", out.stdout);
    assert!(out.stderr.contains("benchmarking org/tiny:kv_fp8 on cpu"), "{}", out.stderr);
}

#[test]
fn bench_warms_up_within_the_smallest_context() {
    // A one-token prompt: the warm-up prefill and its decode step fill the 2-token cache.
    let ctx = ctx_with_tiny_safetensors();
    let out = ctx.run(&["bench", "org/tiny", "--kv", "none", "--ctx", "2", "--gen", "1", "--device", "cpu", "--json"]);
    let v = out.success().json();
    let r = &v["speed"][0];
    assert_eq!((r["prompt_tokens"].as_u64(), r["generated_tokens"].as_u64()), (Some(1), Some(1)));
    let step = &r["decode_step_ms"];
    let spread = ["median", "p90", "p99", "max"].map(|k| step[k].as_f64().unwrap());
    assert!(spread.iter().all(|&t| t == spread[0]), "one step is its own spread: {step}");
}

#[test]
fn bench_errors_exit_2_and_say_what_fits() {
    let ctx = ctx_with_tiny_safetensors();
    let bench = |extra: &[&str]| ctx.run(&[&["bench", "org/tiny", "--device", "cpu"], extra].concat());
    bench(&["--kv", "none,kv_q4"]).assert(
        2,
        "",
        "error: `--kv kv_q4` is not a KV-cache scheme\nhint: list schemes from `none`, `kv_int8` and `kv_fp8`, e.g. `--kv none,kv_fp8`\n",
    );
    bench(&["--ctx", "64,1000"]).assert(
        2,
        "",
        "loading org/tiny ...\nerror: `--ctx-size 1000` is beyond the model's context length of 256\nhint: use `--ctx-size 256` or less\n",
    );
    bench(&["--ctx", "0"]).assert(2, "", "error: `--ctx-size` must be at least 1\n");
    bench(&["--gen", "0"]).assert(2, "", "error: `--gen` must be at least 1, not 0\n");
    let one_word = ctx.root.path().join("one-word.txt");
    std::fs::write(&one_word, "w3").unwrap();
    let short_text = bench(&["--ctx", "64", "--text", one_word.to_str().unwrap()]);
    assert_eq!(short_text.code, 2);
    assert!(
        short_text.stderr.ends_with(
            "error: `--text` file `[ROOT]/one-word.txt` holds fewer than two tokens: nothing to score\n\
             hint: give `--text` a longer text (a few hundred tokens or more)\n"
        ),
        "{}",
        short_text.stderr
    );
    let short = bench(&["--ctx", "8", "--gen", "8"]);
    assert_eq!(short.code, 2);
    assert!(short.stderr.ends_with("error: `--gen 8` leaves no room for a prompt in a context of 8 tokens\nhint: lower `--gen` or raise the `--ctx` values\n"), "{}", short.stderr);
    bench(&["--ctx", "64", "--text", "/nonexistent/text.txt"]).assert(
        2,
        "",
        "error: cannot read `--text` file `/nonexistent/text.txt`\n  caused by: No such file or directory (os error 2)\n\
         hint: give `--text` a readable UTF-8 text file\n",
    );
}

#[test]
fn bench_of_a_gguf_model_measures_its_f16_cache_and_refuses_kv_schemes() {
    let ctx = ctx_with_smollm2_gguf();
    let out = ctx.run(&["bench", "smollm2-gguf", "--device", "cpu", "--ctx", "64", "--gen", "4", "--json"]);
    let v = out.success().json();
    let speed = v["speed"].as_array().unwrap();
    assert_eq!(speed.len(), 1, "{v}");
    // 30 layers × (K, V) × 3 KV heads × 64 × 2 bytes.
    assert_eq!((speed[0]["kv"].as_str(), speed[0]["kv_bytes_per_token"].as_u64()), (Some("f16"), Some(23_040)), "{v}");
    ctx.run(&["bench", "smollm2-gguf", "--device", "cpu", "--kv", "none,kv_int8"]).assert(
        2,
        "",
        "error: `kv_int8` is a KV-cache scheme for safetensors models, but `smollm2-gguf` is a GGUF model: \
         GGUF models take a weight type such as `Q4_K_M`, `Q8_0` or `F16` as their tag\n\
         hint: run `smollm2-gguf` with its GGUF weight type, or pull the safetensors repository to quantize the KV cache\n",
    );
}

/// How far `e2e_ms` may exceed the prefill and decode times it spans: the
/// three are read from one clock, and only two clock reads fall outside the
/// parts (microseconds); the rest allows for a thread descheduled between
/// them on a busy machine.
const E2E_UNTIMED_MS: f64 = 2.0;
/// Rounding of the rates that `--json` gives the parts' times through (they
/// are exact quotients, read back as f64).
const RATE_ROUNDING_MS: f64 = 1e-6;

#[test]
fn bench_times_the_first_token_and_the_whole_context_end_to_end() {
    let ctx = ctx_with_tiny_safetensors();
    // 32 and 192 prompt tokens, then 64 decode steps: the whole context end to end (#15).
    let args = ["bench", "org/tiny", "--ctx", "96,256", "--gen", "64", "--device", "cpu", "--json"];
    let v = ctx.run(&args).success().json();
    let speed = v["speed"].as_array().unwrap();
    assert_eq!(speed.len(), 6, "{v}");
    for r in speed {
        let num = |key: &str| r[key].as_f64().unwrap_or_else(|| panic!("{key}: {r}"));
        let (ttft, e2e) = (num("ttft_ms"), num("e2e_ms"));
        // The prefill rate is the prompt over the time to first token (the same span).
        let prefill_ms = num("prompt_tokens") / num("prefill_tokens_per_s") * 1e3;
        let decode_ms = num("generated_tokens") / num("decode_tokens_per_s") * 1e3;
        assert!((prefill_ms - ttft).abs() <= RATE_ROUNDING_MS, "ttft {ttft} vs prefill {prefill_ms}: {r}");
        assert!(ttft > 0.0 && e2e >= ttft, "{r}");
        // One span holds both parts, so it is never shorter than their sum.
        let parts = prefill_ms + decode_ms;
        assert!(e2e >= parts - RATE_ROUNDING_MS, "e2e {e2e} < prefill + decode {parts}: {r}");
        assert!(e2e <= parts + E2E_UNTIMED_MS, "e2e {e2e} > prefill + decode {parts} + {E2E_UNTIMED_MS}: {r}");
        let step = |key: &str| r["decode_step_ms"][key].as_f64().unwrap_or_else(|| panic!("decode_step_ms.{key}: {r}"));
        let (median, p99, max) = (step("median"), step("p99"), step("max"));
        assert!(0.0 < median && median <= p99 && p99 <= max, "{r}");
        // The steps are in the decode time, and 64 of them cannot all be faster than their median.
        assert!(max <= decode_ms && median * 32.0 <= decode_ms, "steps {median}/{max} vs decode {decode_ms}: {r}");
    }
}

/// The `<polyline>`s of an SVG drawn as series (not axes or ticks): their
/// stroke colour and point count.
fn series_lines(svg: &roxmltree::Document) -> Vec<(String, usize)> {
    let width = llmctl::ui::plot::SERIES_STROKE_WIDTH.to_string();
    svg.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some(width.as_str()))
        .map(|n| {
            (n.attribute("stroke").unwrap().to_string(), n.attribute("points").unwrap().split_whitespace().count())
        })
        .collect()
}

/// The text of every `<text>` element, trimmed.
fn svg_texts<'a>(svg: &'a roxmltree::Document) -> Vec<&'a str> {
    svg.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect()
}

#[test]
fn bench_plots_decode_speed_and_end_to_end_time_a_line_per_scheme() {
    let ctx = ctx_with_tiny_safetensors();
    let dir = ctx.root.path().join("plots");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("bench.svg");
    // An existing file is replaced.
    std::fs::write(&file, "old").unwrap();
    let out = ctx.run(&[
        "bench",
        "org/tiny",
        "--ctx",
        "32,64,128",
        "--gen",
        "4",
        "--device",
        "cpu",
        "--json",
        "--plot",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.success().json()["speed"].as_array().unwrap().len(), 9, "stdout keeps the JSON");
    assert!(out.stderr.ends_with("wrote the plot to [ROOT]/plots/bench.svg\n"), "{}", out.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    let svg = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML: {e}\n{text}"));
    assert!(svg.root_element().has_tag_name("svg"), "{text}");
    // Two panels, a line per scheme in each, through the three contexts; each scheme keeps its colour.
    let lines = series_lines(&svg);
    assert_eq!(lines.len(), 2 * 3, "{lines:?}");
    assert!(lines.iter().all(|&(_, points)| points == 3), "{lines:?}");
    let (left, right) = lines.split_at(3);
    assert_eq!(left, right, "the panels' colours differ");
    let colours: std::collections::HashSet<_> = left.iter().map(|(c, _)| c).collect();
    assert_eq!(colours.len(), 3, "{lines:?}");
    let texts: Vec<&str> = svg_texts(&svg);
    for label in ["f32", "kv_int8", "kv_fp8", "decode tokens/s", "context (tokens)", "32", "64", "128"] {
        assert!(texts.contains(&label), "no text `{label}` in {texts:?}");
    }
    // The legend names each scheme once, for both panels.
    for scheme in ["f32", "kv_int8", "kv_fp8"] {
        assert_eq!(texts.iter().filter(|&&t| t == scheme).count(), 1, "{scheme}: {texts:?}");
    }
}

#[test]
fn bench_plots_a_single_case_with_the_table_on_stdout() {
    let ctx = ctx_with_tiny_safetensors();
    let file = ctx.root.path().join("one.SVG");
    let out = ctx.run(&[
        "bench",
        "org/tiny",
        "--kv",
        "kv_int8",
        "--ctx",
        "16",
        "--gen",
        "2",
        "--device",
        "cpu",
        "--plot",
        file.to_str().unwrap(),
    ]);
    assert!(out.success().stdout.starts_with("org/tiny on cpu\n"), "{}", out.stdout);
    let text = std::fs::read_to_string(&file).unwrap();
    let svg = roxmltree::Document::parse(&text).unwrap();
    // One scheme at one context: a line of one point in each panel (and a dot, to be seen).
    let lines = series_lines(&svg);
    assert!(lines.len() == 2 && lines[0] == lines[1] && lines[0].1 == 1, "{lines:?}");
    assert_eq!(svg.descendants().filter(|n| n.has_tag_name("circle")).count(), 2, "{text}");
    let texts: Vec<&str> = svg_texts(&svg);
    assert_eq!(texts.iter().filter(|&&t| t == "kv_int8").count(), 1, "{texts:?}");
}

#[test]
fn bench_checks_the_plot_path_before_loading_the_model() {
    let ctx = ctx_with_tiny_safetensors();
    let root = ctx.root.path();
    std::fs::create_dir(root.join("dir.svg")).unwrap();
    std::fs::write(root.join("file.txt"), "").unwrap();
    let bench = |plot: &str| ctx.run(&["bench", "org/tiny", "--device", "cpu", "--plot", plot]);
    bench("bench.png").assert(
        2,
        "",
        "error: `--plot` file `bench.png` does not end in `.svg`\nhint: give a file name ending in `.svg`, e.g. `--plot bench.svg`\n",
    );
    bench("bench").assert(
        2,
        "",
        "error: `--plot` file `bench` does not end in `.svg`\nhint: give a file name ending in `.svg`, e.g. `--plot bench.svg`\n",
    );
    bench(root.join("dir.svg").to_str().unwrap()).assert(
        2,
        "",
        "error: `--plot` path `[ROOT]/dir.svg` names a directory, not a file\nhint: give a file to write, e.g. `--plot [ROOT]/dir.svg/bench.svg`\n",
    );
    bench("new.svg/").assert(
        2,
        "",
        "error: `--plot` path `new.svg/` names a directory, not a file\nhint: give a file to write, e.g. `--plot new.svg/bench.svg`\n",
    );
    bench(root.join("missing/bench.svg").to_str().unwrap()).assert(
        2,
        "",
        "error: cannot write `--plot` file `[ROOT]/missing/bench.svg`: directory `[ROOT]/missing` does not exist\n\
         hint: create directory `[ROOT]/missing` first, or write the plot into an existing one\n",
    );
    bench(root.join("file.txt/bench.svg").to_str().unwrap()).assert(
        2,
        "",
        "error: cannot write `--plot` file `[ROOT]/file.txt/bench.svg`: `[ROOT]/file.txt` is not a directory\n\
         hint: write the plot into a directory, e.g. `--plot bench.svg`\n",
    );
}

#[test]
fn a_plot_that_cannot_be_written_exits_2_after_the_numbers() {
    // A link to a file in no directory passes the checks (an `.svg` name, in a directory
    // that exists) and fails only when written, even for root, who may write anywhere.
    let ctx = ctx_with_tiny_safetensors();
    let link = ctx.root.path().join("link.svg");
    std::os::unix::fs::symlink("/nonexistent/bench.svg", &link).unwrap();
    let out = ctx.run(&[
        "bench",
        "org/tiny",
        "--ctx",
        "16",
        "--gen",
        "2",
        "--device",
        "cpu",
        "--plot",
        link.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.starts_with("org/tiny on cpu\n"), "the table is printed first: {}", out.stdout);
    assert!(
        out.stderr.ends_with(
            "error: cannot write `--plot` file `[ROOT]/link.svg`\n  caused by: No such file or directory (os error 2)\n\
             hint: the numbers went to stdout all the same; give `--plot` a file in a directory you can write to\n"
        ),
        "{}",
        out.stderr
    );
}
