//! Man pages (`man/llmctl.1` and `man/llmctl-<sub>.1`) via clap_mangen.

use clap_mangen::Man;

pub fn files() -> Vec<(String, Vec<u8>)> {
    let root = crate::cli::command();
    let mut files = vec![("man/llmctl.1".to_string(), render(root.clone()))];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("llmctl-{}", sub.get_name());
        let page = sub.clone().name(name.clone()).display_name(name.clone()).bin_name(name.clone());
        files.push((format!("man/{name}.1"), render(page)));
    }
    files
}

fn render(command: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    Man::new(command).render(&mut out).expect("rendering into memory cannot fail");
    out
}
