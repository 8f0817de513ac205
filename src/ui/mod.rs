//! Presentation: progress bars, tables and the JSON shapes of command
//! output, chat line editing. Nothing outside this module knows indicatif,
//! comfy-table or rustyline.

pub mod format;
pub mod line_editor;
pub mod progress;
pub mod progress_line;
pub mod stream;
pub mod table;
pub mod views;
