#!/usr/bin/env python3
"""Independent reference for llmctl's chat-template tests (issue #17):
transformers' own chat-template renderer (`render_jinja_template` in
`transformers.utils.chat_template_utils`, the function a tokenizer's
`apply_chat_template` calls; it needs jinja2, not torch) renders each of the
chat templates that llama.cpp keeps in `models/templates/*.jinja`, for a few
standard conversations.

Writes tests/reference/chat_templates_golden.json: the rendered text (or the
exception the template raised) per template and conversation, with each
template's sha256, never the templates themselves. Run it in a virtual
environment with transformers and jinja2:

    python3 -m venv /tmp/tplvenv && /tmp/tplvenv/bin/pip install transformers jinja2
    /tmp/tplvenv/bin/python tests/reference/chat_templates_reference.py \
        target/tmp/models/llama.cpp-models-0.3.36/templates > tests/reference/chat_templates_golden.json

(the folder is where `tests/support/llama_cpp.rs` caches the templates of the
`llama-cpp-python==0.3.36` source distribution; `cargo test --test it
templates::` fetches it first.)

Fixed here, as llmctl's test fixes them: the special tokens (a tokenizer with
only `<s>` and `</s>`, passed as `bos_token` and `eos_token`, as
`apply_chat_template` passes its `special_tokens_map`) and the clock:
`strftime_now` reads `SOURCE_DATE_EPOCH` below, as UTC.
"""
import datetime as dt
import hashlib
import json
import os
import sys

import jinja2
import transformers
from transformers.utils import chat_template_utils

SOURCE_DATE_EPOCH = 1741350896  # 2025-03-07 12:34:56 UTC
BOS, EOS = "<s>", "</s>"

CONVERSATIONS = {
    "system_user": {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "add_generation_prompt": True,
    },
    "multi_turn": {
        "messages": [
            {"role": "user", "content": "Hello! Où est la tour Eiffel?"},
            {"role": "assistant", "content": "Bonjour! The Eiffel Tower is in Paris."},
            {"role": "user", "content": "How tall is it?"},
        ],
        "add_generation_prompt": True,
    },
    "user_only_no_generation_prompt": {
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "add_generation_prompt": False,
    },
}


class FixedClock(dt.datetime):
    """`datetime` whose `now()` is SOURCE_DATE_EPOCH (strftime_now calls `datetime.now()`)."""

    @classmethod
    def now(cls, tz=None):
        fixed = dt.datetime.fromtimestamp(SOURCE_DATE_EPOCH, dt.timezone.utc).replace(tzinfo=None)
        return cls(*fixed.timetuple()[:6])


chat_template_utils.datetime = FixedClock


def render(source, conversation):
    try:
        rendered, _ = chat_template_utils.render_jinja_template(
            conversations=[conversation["messages"]],
            chat_template=source,
            add_generation_prompt=conversation["add_generation_prompt"],
            bos_token=BOS,
            eos_token=EOS,
        )
        return {"text": rendered[0]}
    except Exception as e:  # noqa: BLE001 - the golden records what the template raised
        return {"error_type": type(e).__name__, "error": str(e)}


def main():
    folder = sys.argv[1]
    templates = {}
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".jinja")):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        source = data.decode("utf-8")
        templates[name] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "renders": {case: render(source, conv) for case, conv in CONVERSATIONS.items()},
        }
    golden = {
        "generated_by": "tests/reference/chat_templates_reference.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "python": sys.version.split()[0],
        "source_date_epoch": SOURCE_DATE_EPOCH,
        "bos_token": BOS,
        "eos_token": EOS,
        "conversations": CONVERSATIONS,
        "templates": templates,
    }
    json.dump(golden, sys.stdout, indent=1, ensure_ascii=False, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
