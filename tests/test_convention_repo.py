"""The convention repository of the learning tests and benchmarks (bench/convention_repo.py):
a real git history with stable ids, held-out modules that never enter it, probes that start
held-out modules and stop where a convention shows, and the repository's own checks."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import convention_repo as cr  # noqa: E402
from conftest import git  # noqa: E402


def test_history_is_real_stable_and_has_no_heldout_module(tmp_path):
    a = cr.build_repo(tmp_path / "a")
    b = cr.build_repo(tmp_path / "b")
    log_a = git(a, "log", "--format=%H %s").splitlines()
    assert len(log_a) >= 15
    assert log_a == git(b, "log", "--format=%H %s").splitlines()  # fixed dates: the same ids every time
    files = set(git(a, "ls-files").split())
    assert set(cr.TRAIN_MODULES) <= files and "CONVENTIONS.md" in files
    assert not set(cr.HELDOUT_MODULES) & files
    touched = set(git(a, "log", "--name-only", "--format=").split())
    assert not set(cr.HELDOUT_MODULES) & touched  # not in any commit either
    for path, text in cr.final_train_sources().items():
        assert (a / path).read_text() == text
    with pytest.raises(FileExistsError):
        cr.build_repo(a)


def test_every_module_follows_the_four_conventions_and_the_check_sees_breaks():
    for path, source in {**cr.TRAIN_MODULES, **cr.HELDOUT_MODULES}.items():
        assert cr.follows_conventions(source) == [], path
        compile(source, path, "exec")
    good = cr.HELDOUT_MODULES["tally/refunds.py"]
    assert cr.follows_conventions(good.replace("from tally.log import get_logger", "import logging")) == ["logger"]
    assert cr.follows_conventions(good.replace("(TallyError)", "(Exception)")) == ["error"]
    assert cr.follows_conventions(good.replace("@audited\ndef refund_order", "def refund_order")) == ["audited"]
    assert cr.follows_conventions(good.replace("amount_cents: int, paid", "amount: float, paid")) == ["cents"]
    assert cr.follows_conventions("def broken(:\n") == ["parses"]


def test_probes_start_heldout_modules_and_stop_where_the_convention_shows():
    probes = cr.probes()
    assert len(probes) == 48 and len({p["id"] for p in probes}) == 48
    heldout = list(cr.HELDOUT_MODULES.values())
    for p in probes:
        assert p["mode"] == "text" and p["prompt"] == p["prompt"].rstrip(), p["id"]  # ends on a non-blank char
        path, prompt = p["prompt"].split("\n", 1)
        assert path == "# tally/" + p["id"].split("-")[0] + ".py"
        source = cr.HELDOUT_MODULES[path[2:]]
        p = dict(p, prompt=prompt)
        if p["id"].endswith("-cents"):  # the module's header, then the first function that takes money
            head, signature = p["prompt"].rsplit("\n\n\n@audited\n", 1)
            assert source.startswith(head) and "\n@audited\n" + signature in source
            rest = source[source.index(signature) + len(signature):]
        elif p["id"].endswith("-error"):  # the header without its TallyError import
            assert "from tally.errors import TallyError" in source
            rest = source[source.index(p["prompt"].rsplit("\n", 1)[1]) + len(p["prompt"].rsplit("\n", 1)[1]):]
        else:
            assert source.startswith(p["prompt"])
            rest = source[len(p["prompt"]):]
        assert re.search(p["expect"], rest, re.M), p["id"]  # the real module passes its own probe
        assert not any(s.startswith(p["prompt"].split("\n")[0]) for s in cr.TRAIN_MODULES.values())
        assert cr.CONVENTIONS in p["context"]
        assert cr.CONVENTIONS in p["context"]
    error = next(p for p in probes if p["id"] == "refunds-error")
    assert "TallyError" not in error["prompt"] and re.search(error["expect"], "TallyError):")
    assert not re.search(error["expect"], "Exception):")


def test_unrelated_prompts_never_name_the_repository():
    assert len(cr.GENERAL_TEXT_PROMPTS) >= 10
    for prompt in cr.GENERAL_TEXT_PROMPTS:
        assert not re.search(cr.REPO_NAMES, prompt) and prompt == prompt.rstrip()
    assert re.search(cr.REPO_NAMES, "from tally.log import get_logger")
    assert re.search(cr.REPO_NAMES, "def f(amount_cents):")
    assert not re.search(cr.REPO_NAMES, "def f(amount):  # totally fine")
