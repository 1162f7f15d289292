"""Build Aider's repo map over a given file list; run with bench/.venv-aider/bin/python.

Called by bench_repomap.py (never imported by learnagent: aider lives in its own venv so its
pins don't disturb ours). Prints one JSON line: seconds, map tokens, map chars.

Offline: Aider's RepoMap needs an `io` (file reading, messages) and a `main_model` (only
`token_count`). Both are stubbed here with a len/4 token counter, so no tokenizer, litellm or
network is touched.
"""

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class StubIO:
    def read_text(self, filename, silent=False):
        try:
            with open(filename, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def tool_output(self, *args, **kwargs):
        pass

    tool_warning = tool_error = tool_output


class StubModel:
    def token_count(self, text):
        return len(text) // 4


def main() -> None:
    root, files_list, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(files_list) as f:
        files = [os.path.join(root, line.rstrip("\n")) for line in f if line.strip()]
    started = time.perf_counter()
    from aider.repomap import RepoMap  # import inside the timing: it is part of a cold start

    imported = time.perf_counter()
    rm = RepoMap(map_tokens=max_tokens, root=root, main_model=StubModel(), io=StubIO())
    text = rm.get_ranked_tags_map([], files, max_tokens, set(), set(), force_refresh=True) or ""
    done = time.perf_counter()
    print(json.dumps({
        "seconds": done - imported, "import_seconds": imported - started,
        "tokens": len(text) // 4, "chars": len(text), "files": len(files),
    }))


if __name__ == "__main__":
    main()
