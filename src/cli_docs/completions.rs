//! Shell completion scripts: clap_complete's static scripts, plus MODEL
//! completion: `run`, `show` and `bench` ask `llmctl list --complete WORD`
//! (stored names, and after `name:` every tag valid for that name's format);
//! `rm` offers what is stored (`llmctl list --names`). Errors are silenced, so
//! an empty or missing store completes to nothing.

use clap_complete::Shell as ClapShell;

use crate::cli::Shell;

pub fn script(shell: Shell) -> String {
    let mut command = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(clap_shell(shell), &mut command, "llmctl", &mut out);
    let generated = String::from_utf8(out).expect("clap_complete writes UTF-8");
    match shell {
        Shell::Bash => format!("{generated}{}", BASH_MODELS.replace("VALUE_FLAGS", &value_flags(&command).join("|"))),
        Shell::Zsh => zsh_with_models(&generated),
        Shell::Fish => format!("{generated}{FISH_MODELS}"),
        // These shells do not split words at `:`; they complete MODEL as free text.
        Shell::Powershell | Shell::Elvish => generated,
    }
}

/// Every long flag of any subcommand that takes a value (so the word after
/// it is not a positional argument), from the clap definition, sorted.
fn value_flags(command: &clap::Command) -> Vec<String> {
    let mut flags: Vec<String> = std::iter::once(command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .filter(|a| !a.is_positional() && a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|long| format!("--{long}")))
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// Bash treats `:` as a word break, so `org/m:kv` arrives as three words.
/// The wrapper rebuilds the word from `COMP_LINE` and trims each candidate
/// to what follows the last `:`, as bash-completion's
/// `__ltrim_colon_completions` does.
const BASH_MODELS: &str = r#"
# Stored model names for MODEL arguments of `run`, `show`, `bench` and `rm`.
_llmctl_current_word() {
    local line="${COMP_LINE:0:COMP_POINT}"
    printf '%s' "${line##*[[:space:]]}"
}

_llmctl_wants_model() {
    local -a words
    read -ra words <<< "${COMP_LINE:0:COMP_POINT}x"
    local sub="" positional=0 i
    for (( i = 1; i < ${#words[@]} - 1; i++ )); do
        case "${words[i]}" in
            VALUE_FLAGS) (( i++ )) ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="${words[i]}"; else (( positional++ )); fi ;;
        esac
    done
    _llmctl_sub="$sub"
    case "$sub" in
        run|show|bench) [[ $positional -eq 0 ]] ;;
        rm) return 0 ;;
        *) return 1 ;;
    esac
}

_llmctl_complete() {
    local word _llmctl_sub=""
    word="$(_llmctl_current_word)"
    if [[ "$word" == -* ]] || ! _llmctl_wants_model; then
        _llmctl "$@"
        return
    fi
    local IFS=$'
'
    if [[ "$_llmctl_sub" == rm ]]; then
        COMPREPLY=( $(compgen -W "$(llmctl list --names 2>/dev/null)" -- "$word") )
    else
        COMPREPLY=( $(llmctl list --complete "$word" 2>/dev/null) )
    fi
    if [[ "$word" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        local prefix="${word%"${word##*:}"}" i
        for i in "${!COMPREPLY[@]}"; do
            COMPREPLY[i]="${COMPREPLY[i]#"$prefix"}"
        done
    fi
}

complete -F _llmctl_complete -o bashdefault -o default llmctl
"#;

const ZSH_MODELS: &str = r#"
# MODEL of `run`, `show`, `bench`: stored names and the tags valid after `name:`.
(( $+functions[_llmctl_models] )) ||
_llmctl_models() {
    local -a models
    models=(${(f)"$(llmctl list --complete "$PREFIX" 2>/dev/null)"})
    compadd -- "${models[@]}"
}
# MODELs of `rm`: what is stored.
(( $+functions[_llmctl_stored_models] )) ||
_llmctl_stored_models() {
    local -a models
    models=(${(f)"$(llmctl list --names 2>/dev/null)"})
    compadd -- "${models[@]}"
}
"#;

fn zsh_with_models(generated: &str) -> String {
    let mut out = String::new();
    for (i, line) in generated.lines().enumerate() {
        if line.starts_with("':model -- The model") {
            out.push_str(&line.replace(":_default' \\", ":_llmctl_models' \\"));
        } else if line.starts_with("'*::models -- ") {
            out.push_str(&line.replace(":_default' \\", ":_llmctl_stored_models' \\"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
        if i == 0 {
            out.push_str(ZSH_MODELS);
        }
    }
    out
}

const FISH_MODELS: &str = r#"
# MODEL of `run`, `show`, `bench`: stored names and the tags valid after `name:`; `rm`: what is stored.
complete -c llmctl -n "__fish_seen_subcommand_from run show bench" -f -a "(llmctl list --complete (commandline -ct) 2>/dev/null)"
complete -c llmctl -n "__fish_seen_subcommand_from rm" -f -a "(llmctl list --names 2>/dev/null)"
"#;

fn clap_shell(shell: Shell) -> ClapShell {
    match shell {
        Shell::Bash => ClapShell::Bash,
        Shell::Zsh => ClapShell::Zsh,
        Shell::Fish => ClapShell::Fish,
        Shell::Powershell => ClapShell::PowerShell,
        Shell::Elvish => ClapShell::Elvish,
    }
}

pub fn file_name(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "llmctl.bash",
        Shell::Zsh => "_llmctl",
        Shell::Fish => "llmctl.fish",
        Shell::Powershell => "_llmctl.ps1",
        Shell::Elvish => "llmctl.elv",
    }
}

pub fn files() -> Vec<(String, Vec<u8>)> {
    [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Powershell, Shell::Elvish]
        .into_iter()
        .map(|s| (format!("completions/{}", file_name(s)), script(s).into_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn value_flags_come_from_the_cli_and_leave_out_switches() {
        let flags = super::value_flags(&crate::cli::command());
        for taking in ["--color", "--name", "--revision", "--ctx-size", "--max-tokens", "--device", "--kv", "--text"] {
            assert!(flags.contains(&taking.to_string()), "{taking} missing from {flags:?}");
        }
        for switch in ["--json", "--raw", "--quiet", "--verbose", "--help"] {
            assert!(!flags.contains(&switch.to_string()), "{switch} takes no value: {flags:?}");
        }
    }
}
