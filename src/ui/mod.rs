//! Presentation: progress bars, tables, charts and the JSON shapes of
//! command output, chat line editing. Nothing outside this module knows
//! indicatif, comfy-table, plotters or rustyline.

pub mod format;
pub mod line_editor;
pub mod plot;
pub mod progress;
pub mod progress_line;
pub mod stream;
pub mod table;
pub mod views;
