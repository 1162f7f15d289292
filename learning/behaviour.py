"""What the model writes on held-out code of the repository: a behavioural measure with no regex.

(The measure itself follows in the next step; the general prompts below are shared already.)
"""

from __future__ import annotations

# Raw-text starts of code that belongs to no repository: drift in the text form (what an adapter
# writes into unrelated code, e.g. the repository's imports) is measured on their continuations.
GENERAL_CODE_STARTS: tuple[str, ...] = (
    "def fibonacci(n):\n",
    "import os\nimport sys\n\n",
    "import json\n\n\ndef load_settings(path):\n",
    "class Stack:\n    def __init__(self):\n",
    "from dataclasses import dataclass\n\n\n@dataclass\nclass Point:\n",
    "function debounce(fn, ms) {\n",
    "#include <stdio.h>\n\nint main(void) {\n",
    "fn is_palindrome(s: &str) -> bool {\n",
    "package main\n\nimport (\n",
    "#!/usr/bin/env bash\nset -euo pipefail\n\n",
    "SELECT name, COUNT(*) AS orders\nFROM customers\n",
    "public class Counter {\n",
)
