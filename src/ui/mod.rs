//! Presentation: progress bars, tables and the JSON shapes of command
//! output. Nothing outside this module knows indicatif or comfy-table.

pub mod format;
pub mod progress;
pub mod progress_line;
pub mod stream;
pub mod table;
pub mod views;
