
use builtin;
use str;

set edit:completion:arg-completer[llmctl] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'llmctl'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'llmctl'= {
            cand --color 'When to use colour on stderr'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand pull 'Download a model from the hub (or import a local one) into the store'
            cand run 'Run a stored model on a prompt'
            cand list 'List the models in the store'
            cand ls 'List the models in the store'
            cand show 'Show a stored model''s details, KV-cache sizes and files'
            cand bench 'Measure speed, memory and quality of each KV-cache scheme on a stored model'
            cand rm 'Remove tags from the store, and the files no other tag uses'
            cand serve 'Serve the store''s models over OpenAI- and Ollama-compatible HTTP APIs'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'llmctl;pull'= {
            cand --name 'Store a local import under this name (`name` or `org/name`, optionally `:TAG`)'
            cand --revision 'The branch, tag or commit to pull from the hub (default `main`); recorded in the manifest'
            cand --color 'When to use colour on stderr'
            cand --json 'Print what was stored as JSON on stdout'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;run'= {
            cand --system 'A system prompt before the message, through the model''s chat template (in a chat, as `/set system`)'
            cand --max-tokens 'Stop after this many generated tokens'
            cand --temperature 'Sampling temperature; 0 is greedy [default: the model''s generation config, else 0]'
            cand --top-k 'Sample only among the K most likely tokens [default: the model''s]'
            cand --top-p 'Sample only among the most likely tokens whose probabilities sum to P [default: the model''s]'
            cand --seed 'Seed for sampling: the same seed gives the same output'
            cand --ctx-size 'Context length to allocate the KV cache for [default: the model''s, at most 4096]'
            cand --device 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto` (the GPU if this build has CUDA and one is present)'
            cand --color 'When to use colour on stderr'
            cand --raw 'Send the prompt as it is, without the model''s chat template'
            cand --json 'Print JSON Lines on stdout: a `prompt` event (the rendered prompt and its token ids), one `token` event per token, then a `done` event with statistics'
            cand -v 'Print load, speed, cache and memory statistics on stderr'
            cand --verbose 'Print load, speed, cache and memory statistics on stderr'
            cand --verbose-prompt 'Print the prompt as the model is given it on stderr: the rendered text, then each token id and its text'
            cand --no-pull 'Refuse a model that is not in the store instead of pulling it first'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;list'= {
            cand --complete 'Shell completion of a MODEL word: the stored names starting with it, and after `name:` every tag valid for that name''s format'
            cand --color 'When to use colour on stderr'
            cand --json 'Print a JSON array instead of a table'
            cand --names 'Print only `name[:tag]`, one per line (used by shell completion)'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;ls'= {
            cand --complete 'Shell completion of a MODEL word: the stored names starting with it, and after `name:` every tag valid for that name''s format'
            cand --color 'When to use colour on stderr'
            cand --json 'Print a JSON array instead of a table'
            cand --names 'Print only `name[:tag]`, one per line (used by shell completion)'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;show'= {
            cand --ctx-size 'Context length for the KV-cache size estimate, at most the model''s [default: what `run` allocates, the model''s context up to 4096]'
            cand --color 'When to use colour on stderr'
            cand --verify 'Re-read every file and check its size and sha256 against the manifest (exit 1 when one is missing or damaged)'
            cand --json 'Print one JSON object instead of text'
            cand --template 'Print only the model''s chat template, in full (nothing when it has none), as `ollama show --template`'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;bench'= {
            cand --kv 'KV-cache schemes to compare, comma-separated: `none`, `kv_int8`, `kv_fp8` [default: all three]'
            cand --ctx 'Context lengths, comma-separated [default: 1024,8192,32768 on a GPU, 512,2048 on the CPU, each up to the model''s limit]'
            cand --gen 'Tokens to decode in each case, after a prompt that fills the rest of the context'
            cand --text 'Score each scheme on this text against the unquantized cache (NLL, KL divergence, top-1 agreement)'
            cand --device 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`'
            cand --plot 'Also draw decode tokens/s and end-to-end time against context, a line per scheme, into this SVG file (replaced if it exists)'
            cand --color 'When to use colour on stderr'
            cand --json 'Print one JSON object on stdout instead of tables'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;rm'= {
            cand --color 'When to use colour on stderr'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;serve'= {
            cand --host 'The address to listen on; anything but a loopback address exposes the models to the network'
            cand --port 'The TCP port to listen on (0: any free port)'
            cand --model 'Load this model (`org/name[:TAG]`) before listening; repeat for more. Others load on first use'
            cand --max-queue 'Requests that may wait for room in the KV pool; more are answered 503 with `Retry-After`'
            cand --max-sequences 'Requests of one model and KV scheme generated at once, batched'
            cand --kv-budget 'Memory of each model and KV scheme''s pool of KV blocks, allocated when the pool is made: bytes (`8GiB`, `512MB`, …), or `auto`: `--max-sequences` whole contexts, at most 90% of the GPU''s free memory (CPU: half the available memory)'
            cand --ctx-size 'Context length of each model''s KV cache [default: the model''s, at most 4096]'
            cand --device 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`'
            cand --color 'When to use colour on stderr'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;completions'= {
            cand --color 'When to use colour on stderr'
            cand -q 'Print no progress or status messages (errors and data still print)'
            cand --quiet 'Print no progress or status messages (errors and data still print)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'llmctl;help'= {
            cand pull 'Download a model from the hub (or import a local one) into the store'
            cand run 'Run a stored model on a prompt'
            cand list 'List the models in the store'
            cand show 'Show a stored model''s details, KV-cache sizes and files'
            cand bench 'Measure speed, memory and quality of each KV-cache scheme on a stored model'
            cand rm 'Remove tags from the store, and the files no other tag uses'
            cand serve 'Serve the store''s models over OpenAI- and Ollama-compatible HTTP APIs'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'llmctl;help;pull'= {
        }
        &'llmctl;help;run'= {
        }
        &'llmctl;help;list'= {
        }
        &'llmctl;help;show'= {
        }
        &'llmctl;help;bench'= {
        }
        &'llmctl;help;rm'= {
        }
        &'llmctl;help;serve'= {
        }
        &'llmctl;help;completions'= {
        }
        &'llmctl;help;help'= {
        }
    ]
    $completions[$command]
}
