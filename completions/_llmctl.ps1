
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'llmctl' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'llmctl'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'llmctl' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('pull', 'pull', [CompletionResultType]::ParameterValue, 'Download a model from the hub (or import a local one) into the store')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a stored model on a prompt')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the models in the store')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List the models in the store')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a stored model''s details, KV-cache sizes and files')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure speed, memory and quality of each KV-cache scheme on a stored model')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Remove tags from the store, and the files no other tag uses')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Serve the store''s models over OpenAI- and Ollama-compatible HTTP APIs')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'llmctl;pull' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Store a local import under this name (`name` or `org/name`, optionally `:TAG`)')
            [CompletionResult]::new('--revision', '--revision', [CompletionResultType]::ParameterName, 'The branch, tag or commit to pull from the hub (default `main`); recorded in the manifest')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print what was stored as JSON on stdout')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;run' {
            [CompletionResult]::new('--system', '--system', [CompletionResultType]::ParameterName, 'A system prompt before the message, through the model''s chat template (in a chat, as `/set system`)')
            [CompletionResult]::new('--max-tokens', '--max-tokens', [CompletionResultType]::ParameterName, 'Stop after this many generated tokens')
            [CompletionResult]::new('--temperature', '--temperature', [CompletionResultType]::ParameterName, 'Sampling temperature; 0 is greedy [default: the model''s generation config, else 0]')
            [CompletionResult]::new('--top-k', '--top-k', [CompletionResultType]::ParameterName, 'Sample only among the K most likely tokens [default: the model''s]')
            [CompletionResult]::new('--top-p', '--top-p', [CompletionResultType]::ParameterName, 'Sample only among the most likely tokens whose probabilities sum to P [default: the model''s]')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'Seed for sampling: the same seed gives the same output')
            [CompletionResult]::new('--ctx-size', '--ctx-size', [CompletionResultType]::ParameterName, 'Context length to allocate the KV cache for [default: the model''s, at most 4096]')
            [CompletionResult]::new('--device', '--device', [CompletionResultType]::ParameterName, 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto` (the GPU if this build has CUDA and one is present)')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--raw', '--raw', [CompletionResultType]::ParameterName, 'Send the prompt as it is, without the model''s chat template')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON Lines on stdout: a `prompt` event (the rendered prompt and its token ids), one `token` event per token, then a `done` event with statistics')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print load, speed, cache and memory statistics on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print load, speed, cache and memory statistics on stderr')
            [CompletionResult]::new('--verbose-prompt', '--verbose-prompt', [CompletionResultType]::ParameterName, 'Print the prompt as the model is given it on stderr: the rendered text, then each token id and its text')
            [CompletionResult]::new('--no-pull', '--no-pull', [CompletionResultType]::ParameterName, 'Refuse a model that is not in the store instead of pulling it first')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;list' {
            [CompletionResult]::new('--complete', '--complete', [CompletionResultType]::ParameterName, 'Shell completion of a MODEL word: the stored names starting with it, and after `name:` every tag valid for that name''s format')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print a JSON array instead of a table')
            [CompletionResult]::new('--names', '--names', [CompletionResultType]::ParameterName, 'Print only `name[:tag]`, one per line (used by shell completion)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;ls' {
            [CompletionResult]::new('--complete', '--complete', [CompletionResultType]::ParameterName, 'Shell completion of a MODEL word: the stored names starting with it, and after `name:` every tag valid for that name''s format')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print a JSON array instead of a table')
            [CompletionResult]::new('--names', '--names', [CompletionResultType]::ParameterName, 'Print only `name[:tag]`, one per line (used by shell completion)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;show' {
            [CompletionResult]::new('--ctx-size', '--ctx-size', [CompletionResultType]::ParameterName, 'Context length for the KV-cache size estimate, at most the model''s [default: what `run` allocates, the model''s context up to 4096]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--verify', '--verify', [CompletionResultType]::ParameterName, 'Re-read every file and check its size and sha256 against the manifest (exit 1 when one is missing or damaged)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object instead of text')
            [CompletionResult]::new('--template', '--template', [CompletionResultType]::ParameterName, 'Print only the model''s chat template, in full (nothing when it has none), as `ollama show --template`')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;bench' {
            [CompletionResult]::new('--kv', '--kv', [CompletionResultType]::ParameterName, 'KV-cache schemes to compare, comma-separated: `none`, `kv_int8`, `kv_fp8` [default: all three]')
            [CompletionResult]::new('--ctx', '--ctx', [CompletionResultType]::ParameterName, 'Context lengths, comma-separated [default: 1024,8192,32768 on a GPU, 512,2048 on the CPU, each up to the model''s limit]')
            [CompletionResult]::new('--gen', '--gen', [CompletionResultType]::ParameterName, 'Tokens to decode in each case, after a prompt that fills the rest of the context')
            [CompletionResult]::new('--text', '--text', [CompletionResultType]::ParameterName, 'Score each scheme on this text against the unquantized cache (NLL, KL divergence, top-1 agreement)')
            [CompletionResult]::new('--device', '--device', [CompletionResultType]::ParameterName, 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`')
            [CompletionResult]::new('--plot', '--plot', [CompletionResultType]::ParameterName, 'Also draw decode tokens/s and end-to-end time against context, a line per scheme, into this SVG file (replaced if it exists)')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object on stdout instead of tables')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;rm' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;serve' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'The address to listen on; anything but a loopback address exposes the models to the network')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'The TCP port to listen on (0: any free port)')
            [CompletionResult]::new('--model', '--model', [CompletionResultType]::ParameterName, 'Load this model (`org/name[:TAG]`) before listening; repeat for more. Others load on first use')
            [CompletionResult]::new('--max-queue', '--max-queue', [CompletionResultType]::ParameterName, 'Requests that may wait for room in the KV pool; more are answered 503 with `Retry-After`')
            [CompletionResult]::new('--max-sequences', '--max-sequences', [CompletionResultType]::ParameterName, 'Requests of one model and KV scheme generated at once, batched')
            [CompletionResult]::new('--kv-budget', '--kv-budget', [CompletionResultType]::ParameterName, 'Memory of each model and KV scheme''s pool of KV blocks, allocated when the pool is made: bytes (`8GiB`, `512MB`, …), or `auto`: `--max-sequences` whole contexts, at most 90% of the GPU''s free memory (CPU: half the available memory)')
            [CompletionResult]::new('--ctx-size', '--ctx-size', [CompletionResultType]::ParameterName, 'Context length of each model''s KV cache [default: the model''s, at most 4096]')
            [CompletionResult]::new('--device', '--device', [CompletionResultType]::ParameterName, 'Where to run: `cpu`, `cuda`, `cuda:N`, or `auto`')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;completions' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no progress or status messages (errors and data still print)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'llmctl;help' {
            [CompletionResult]::new('pull', 'pull', [CompletionResultType]::ParameterValue, 'Download a model from the hub (or import a local one) into the store')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a stored model on a prompt')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the models in the store')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a stored model''s details, KV-cache sizes and files')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Measure speed, memory and quality of each KV-cache scheme on a stored model')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Remove tags from the store, and the files no other tag uses')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Serve the store''s models over OpenAI- and Ollama-compatible HTTP APIs')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'llmctl;help;pull' {
            break
        }
        'llmctl;help;run' {
            break
        }
        'llmctl;help;list' {
            break
        }
        'llmctl;help;show' {
            break
        }
        'llmctl;help;bench' {
            break
        }
        'llmctl;help;rm' {
            break
        }
        'llmctl;help;serve' {
            break
        }
        'llmctl;help;completions' {
            break
        }
        'llmctl;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
