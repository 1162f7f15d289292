"""Check the layer contract of pyproject.toml ([tool.importlinter]) with import-linter.

    .venv/bin/python scripts/lint_imports.py            # exit 1 when a contract is broken (CI: .ci/run)
    .venv/bin/python scripts/lint_imports.py --report   # print what is broken, exit 0 (a look while moving code)

The top-level folders are mapped into the `learnagent` namespace by [tool.setuptools.package-dir];
an editable install resolves that mapping with an import hook that import-linter's graph builder
(grimp, which walks the package's folder) does not follow, so it would see `learnagent` without its
sub-packages. This script lays the sources out as installed (a copy, in a temporary folder) and
checks that. The contract holds (issue 13 moved the upward imports into services/), and CI runs
it without --report: an upward import, also one inside a function, fails the build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lay_out(dest: Path) -> None:
    """The packages as they are installed: dest/learnagent/<sub>/... from their source folders."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):  # parents before children
        target = dest.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "_root", ".*"))


def main(argv: list[str]) -> int:
    report_only = "--report" in argv
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        print("lint-imports is not installed (pip install import-linter; scripts/setup.sh does)", file=sys.stderr)
        return 0 if report_only else 2
    with tempfile.TemporaryDirectory(prefix="learnagent-layers-") as tmp:
        lay_out(Path(tmp))
        env = dict(os.environ, PYTHONPATH=tmp)
        done = subprocess.run([str(lint), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp, env=env)
    if done.returncode and report_only:
        print("layer contract: broken (reported only: --report)")
        return 0
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
