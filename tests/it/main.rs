//! The CPU integration tests, in one binary (one link against candle and
//! tokenizers instead of six): a module per area. The GPU suite stays its
//! own binary (`tests/gpu.rs`, `--features cuda` only).
//!
//! Run one area with a filter, e.g. `cargo test --test it hub::`.

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod chat;
mod cli;
mod engine;
mod families;
mod faults;
mod fuzz;
mod generated;
mod gguf_families;
mod hostile_models;
mod hub;
mod imports;
mod serve;
mod split_gguf;
mod templates;
mod vocab;
