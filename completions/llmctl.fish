# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_llmctl_global_optspecs
    string join \n q/quiet color= h/help V/version
end

function __fish_llmctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_llmctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_llmctl_using_subcommand
    set -l cmd (__fish_llmctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c llmctl -n "__fish_llmctl_needs_command" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_needs_command" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_needs_command" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_needs_command" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "pull" -d 'Download a model from the hub (or import a local one) into the store'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "run" -d 'Run a stored model on a prompt'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "list" -d 'List the models in the store'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "ls" -d 'List the models in the store'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "show" -d 'Show a stored model\'s details, KV-cache sizes and files'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "bench" -d 'Measure speed, memory and quality of each KV-cache scheme on a stored model'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "rm" -d 'Remove tags from the store, and the files no other tag uses'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "serve" -d 'Serve the store\'s models over OpenAI- and Ollama-compatible HTTP APIs'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c llmctl -n "__fish_llmctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmctl -n "__fish_llmctl_using_subcommand pull" -l name -d 'Store a local import under this name (`name` or `org/name`, optionally `:TAG`)' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand pull" -l revision -d 'The branch, tag or commit to pull from the hub (default `main`); recorded in the manifest' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand pull" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand pull" -l json -d 'Print what was stored as JSON on stdout'
complete -c llmctl -n "__fish_llmctl_using_subcommand pull" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand pull" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand pull" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l system -d 'A system prompt before the message, through the model\'s chat template (in a chat, as `/set system`)' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l max-tokens -d 'Stop after this many generated tokens' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l temperature -d 'Sampling temperature; 0 is greedy [default: the model\'s generation config, else 0]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l top-k -d 'Sample only among the K most likely tokens [default: the model\'s]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l top-p -d 'Sample only among the most likely tokens whose probabilities sum to P [default: the model\'s]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l seed -d 'Seed for sampling: the same seed gives the same output' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l ctx-size -d 'Context length to allocate the KV cache for [default: the model\'s, at most 4096]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l device -d 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto` (the GPU if this build has CUDA and one is present)' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l raw -d 'Send the prompt as it is, without the model\'s chat template'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l json -d 'Print JSON Lines on stdout: a `prompt` event (the rendered prompt and its token ids), one `token` event per token, then a `done` event with statistics'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -s v -l verbose -d 'Print load, speed, cache and memory statistics on stderr'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l verbose-prompt -d 'Print the prompt as the model is given it on stderr: the rendered text, then each token id and its text'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -l no-pull -d 'Refuse a model that is not in the store instead of pulling it first'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand run" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand list" -l complete -d 'Shell completion of a MODEL word: the stored names starting with it, and after `name:` every tag valid for that name\'s format' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand list" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand list" -l json -d 'Print a JSON array instead of a table'
complete -c llmctl -n "__fish_llmctl_using_subcommand list" -l names -d 'Print only `name[:tag]`, one per line (used by shell completion)'
complete -c llmctl -n "__fish_llmctl_using_subcommand list" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand list" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand list" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand ls" -l complete -d 'Shell completion of a MODEL word: the stored names starting with it, and after `name:` every tag valid for that name\'s format' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand ls" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand ls" -l json -d 'Print a JSON array instead of a table'
complete -c llmctl -n "__fish_llmctl_using_subcommand ls" -l names -d 'Print only `name[:tag]`, one per line (used by shell completion)'
complete -c llmctl -n "__fish_llmctl_using_subcommand ls" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand ls" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand ls" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -l ctx-size -d 'Context length for the KV-cache size estimate, at most the model\'s [default: what `run` allocates, the model\'s context up to 4096]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -l verify -d 'Re-read every file and check its size and sha256 against the manifest (exit 1 when one is missing or damaged)'
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -l json -d 'Print one JSON object instead of text'
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -l template -d 'Print only the model\'s chat template, in full (nothing when it has none), as `ollama show --template`'
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand show" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l kv -d 'KV-cache schemes to compare, comma-separated: `none`, `kv_int8`, `kv_fp8` [default: all three]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l ctx -d 'Context lengths, comma-separated [default: 1024,8192,32768 on a GPU, 512,2048 on the CPU, each up to the model\'s limit]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l gen -d 'Tokens to decode in each case, after a prompt that fills the rest of the context' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l text -d 'Score each scheme on this text against the unquantized cache (NLL, KL divergence, top-1 agreement)' -r -F
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l device -d 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l plot -d 'Also draw decode tokens/s and end-to-end time against context, a line per scheme, into this SVG file (replaced if it exists)' -r -F
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -l json -d 'Print one JSON object on stdout instead of tables'
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand bench" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand rm" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand rm" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand rm" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand rm" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l host -d 'The address to listen on; anything but a loopback address exposes the models to the network' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l port -d 'The TCP port to listen on (0: any free port)' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l model -d 'Load this model (`org/name[:TAG]`) before listening; repeat for more. Others load on first use' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l max-queue -d 'Requests that may wait for room in the KV pool; more are answered 503 with `Retry-After`' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l max-sequences -d 'Requests of one model and KV scheme generated at once, batched' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l kv-budget -d 'Memory of each model and KV scheme\'s pool of KV blocks, allocated when the pool is made: bytes (`8GiB`, `512MB`, …), or `auto`: `--max-sequences` whole contexts, at most 90% of the GPU\'s free memory (CPU: half the available memory)' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l ctx-size -d 'Context length of each model\'s KV cache [default: the model\'s, at most 4096]' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l device -d 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`' -r
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand serve" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand completions" -l color -d 'When to use colour on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmctl -n "__fish_llmctl_using_subcommand completions" -s q -l quiet -d 'Print no progress or status messages (errors and data still print)'
complete -c llmctl -n "__fish_llmctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c llmctl -n "__fish_llmctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "pull" -d 'Download a model from the hub (or import a local one) into the store'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "run" -d 'Run a stored model on a prompt'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "list" -d 'List the models in the store'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "show" -d 'Show a stored model\'s details, KV-cache sizes and files'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "bench" -d 'Measure speed, memory and quality of each KV-cache scheme on a stored model'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "rm" -d 'Remove tags from the store, and the files no other tag uses'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "serve" -d 'Serve the store\'s models over OpenAI- and Ollama-compatible HTTP APIs'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c llmctl -n "__fish_llmctl_using_subcommand help; and not __fish_seen_subcommand_from pull run list show bench rm serve completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

# MODEL of `run`, `show`, `bench`: stored names and the tags valid after `name:`; `rm`: what is stored.
complete -c llmctl -n "__fish_seen_subcommand_from run show bench" -f -a "(llmctl list --complete (commandline -ct) 2>/dev/null)"
complete -c llmctl -n "__fish_seen_subcommand_from rm" -f -a "(llmctl list --names 2>/dev/null)"
