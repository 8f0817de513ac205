//! The `llmctl` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    llmctl::main()
}
