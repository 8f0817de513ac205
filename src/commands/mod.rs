//! One file per subcommand, all with the same signature: global settings,
//! the command's own settings and the printer in, an exit status out.

pub mod bench;
pub mod completions;
pub mod list;
pub mod pull;
pub mod rm;
pub mod run;
pub mod serve;
pub mod show;

use crate::settings::GlobalSettings;
use crate::store::Store;

/// Opens the store the settings point at.
fn open_store(global: &GlobalSettings) -> anyhow::Result<Store> {
    Ok(Store::open(&global.store_root)?)
}
