"""Code-continuation samples mined from a real git repository and its imported history."""

import subprocess

import pytest

from code_repo import make_code_repo
from conftest import git
from learnagent.core.repository import Repository
from learnagent.learning import code_pairs
from learnagent.learning.code_pairs import apply_hunks, file_diffs, heldout_file, heldout_paths, mine_code, to_pairs
from learnagent.learning.pairs import build_pairs, diff_files, is_heldout
from learnagent.store.episodes import Store
from learnagent.store.history import import_history
from repo_helpers import folder_repository

FRACTION = 0.3


def _git_diff(tmp_path, before: str | None, after: str) -> str:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(before or "")
    b.write_text(after)
    out = subprocess.run(["git", "diff", "--no-index", "--no-color", str(a) if before is not None else "/dev/null",
                          str(b)], capture_output=True, text=True).stdout
    return out.replace(str(a), "/calc.py").replace(str(b), "/calc.py")


@pytest.mark.parametrize("before, after", [
    ("a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6\ng = 7\nh = 8\n", "a = 1\nb = 20\nc = 3\nd = 4\ne = 5\nf = 6\nnew\ng = 7\nh = 8\n"),
    ("one\ntwo\n", "zero\none\ntwo\nthree"),  # no newline at the end after
    ("one\ntwo", "one\ntwo\nthree\n"),  # no newline at the end before
    (None, "def f():\n    return 1\n"),  # a new file
])
def test_apply_hunks_rebuilds_what_git_diffed(tmp_path, before, after):
    diffs = file_diffs(_git_diff(tmp_path, before, after))
    (path, (created, hunks)), = diffs.items()
    assert created == (before is None)
    text, added = apply_hunks(before or "", hunks)
    assert text == after
    lines = after.splitlines()
    assert [lines[n] for n in added] == [h[1:] for h in hunks if h.startswith("+")]


def test_apply_hunks_refuses_a_diff_that_does_not_fit(tmp_path):
    (_, (_, hunks)), = file_diffs(_git_diff(tmp_path, "a\nb\nc\n", "a\nB\nc\n")).items()
    assert apply_hunks("a\nX\nc\n", hunks) is None


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The convention repository with its history imported into a store.

    Episode ids hash the repository's key, so its path: which of the 12 episodes are held out
    changes with the temporary folder, and about 1 path in 70 holds none out at FRACTION (0.7**12).
    The repository is made again under another name until some, but not all, are held out, so the
    tests below never pass for want of a held-out episode (an episode held out whose only file is
    a held-out file leaves no episode document: that happened too)."""
    base = tmp_path_factory.mktemp("code")
    for attempt in range(20):
        root = make_code_repo(base / f"repo{attempt}")
        store = Store(tmp_path_factory.mktemp("store") / "db.sqlite")
        report = import_history(store, Repository.at(root))
        assert len(report.imported) == 12  # one per module (the root commit has no parent to diff)
        episode_docs = [d for d in mine_code(root, store, store.ensure_repo(Repository.at(root)), heldout_fraction=FRACTION).docs
                        if d.origin == "episode"]
        if any(d.heldout for d in episode_docs) and not all(d.heldout for d in episode_docs):
            break
        store.close()
    yield root, store, store.ensure_repo(Repository.at(root))
    store.close()


def test_split_by_file_and_retrieval_never_shows_held_out_files(history):
    root, store, rid = history
    corpus = mine_code(root, store, rid, heldout_fraction=FRACTION)
    held_files = {p for p in corpus.files if heldout_file(p, FRACTION)}
    assert held_files and held_files != set(corpus.files)  # the fixture exercises both sides
    assert "AGENTS.md" not in corpus.files and "shop/log.py" in corpus.files
    heads = {d.path: d for d in corpus.docs if d.origin == "file"}
    assert set(heads) == set(corpus.files)
    assert {p for p, d in heads.items() if d.heldout} == held_files
    assert not held_files & set(corpus.pool)
    samples = corpus.samples(per_doc=4)
    assert samples and all(not s.heldout for s in samples)
    for s in samples:
        assert s.path not in held_files and s.path not in s.retrieved  # never itself
        assert not held_files & set(s.retrieved)  # never a held-out file
        assert "Import `log_call` from shop.log" in s.context  # the conventions file
        for path in s.retrieved:
            assert f"# {path}\n" in s.context  # every file under its path line, as the documents are
    # held-out documents get contexts from the same pool (the ceiling is retrieved, no oracle)
    for doc in corpus.heldout:
        context, paths = corpus.context(doc, doc.lines[0])
        assert doc.path not in paths and not held_files & set(paths)


def test_samples_cut_files_at_lines_and_the_target_is_what_was_written(history):
    root, store, rid = history
    corpus = mine_code(root, store, rid, heldout_fraction=FRACTION)
    docs = {d.key: d for d in corpus.docs}
    samples = corpus.samples(per_doc=3, target_lines=2)
    by_doc: dict[str, int] = {}
    for s in samples:
        doc = docs[s.id.rsplit(":", 1)[0]]
        by_doc[doc.key] = by_doc.get(doc.key, 0) + 1
        assert doc.text.startswith(s.prefix + s.target) and s.prefix.startswith(f"# {doc.path}")
        # x ends on a non-blank character; y starts with the line breaks, then the line at the cut
        assert s.prefix == s.prefix.rstrip() and s.target.startswith("\n")
        blank = s.target[: len(s.target) - len(s.target.lstrip())]
        cut = len(s.prefix) + blank.rindex("\n") + 1
        assert cut in doc.lines and s.next_line == doc.text[cut:].split("\n", 1)[0] and s.next_line.strip()
        assert s.target.strip().count("\n") <= 1 and s.mode == "text"
        line_number = int(s.id.rsplit(":", 1)[1])  # the file's own 1-based line number
        assert (doc.text.split("\n")[line_number] == s.next_line)
    assert max(by_doc.values()) <= 3
    # deterministic: the same repository gives the same samples
    assert corpus.samples(per_doc=3, target_lines=2) == mine_code(root, store, rid, heldout_fraction=FRACTION) \
        .samples(per_doc=3, target_lines=2)


def test_block_starts_are_the_top_level_statements_and_block_cuts_prefer_them(tmp_path):
    text = ("# pkg/mod.py\n\"\"\"Doc.\"\"\"\nimport os\nfrom pkg.log import (\n    get,\n)\n\nlog = get(__name__)\n\n\n"
            "@audited\ndef f(a,\n      b):\n    return a\n\n\nclass E(Exception):\n    pass\n")
    lines = tuple(i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text) and text[i + 1] != "\n"
                  and i > text.index("\n") - 1)
    doc = code_pairs.CodeDoc("pkg/mod.py", text, "file", None, False, lines)
    starts = [text[o:text.index("\n", o)] for o in code_pairs.block_starts(doc)]
    # not: the import's continuation and its closing bracket, the def under its decorator, bodies
    assert starts == ['"""Doc."""', "import os", "from pkg.log import (", "log = get(__name__)", "@audited",
                      "class E(Exception):"]
    corpus = code_pairs.CodeCorpus(root=tmp_path, files={doc.path: text[len("# pkg/mod.py\n"):]}, docs=[doc],
                                   conventions="", heldout_fraction=0.0)
    cut_lines = lambda samples: [s.next_line for s in samples]  # noqa: E731
    assert cut_lines(corpus.samples([doc], per_doc=6, cuts="blocks")) == starts
    few = cut_lines(corpus.samples([doc], per_doc=3, cuts="blocks"))
    assert len(few) == 3 and set(few) <= set(starts)
    more = cut_lines(corpus.samples([doc], per_doc=8, cuts="blocks"))  # every block start, then other lines
    assert len(more) == 8 and set(starts) < set(more)
    with pytest.raises(ValueError, match="cuts"):
        corpus.samples([doc], cuts="random")


def test_lines_only_held_out_episodes_wrote_never_train(history):
    root, store, rid = history
    corpus = mine_code(root, store, rid, heldout_fraction=FRACTION)
    episode_docs = [d for d in corpus.docs if d.origin == "episode"]
    held_eps = {d.episode_id for d in episode_docs if d.heldout}
    assert held_eps and all(is_heldout(e, FRACTION) for e in held_eps)
    assert {d.episode_id for d in episode_docs if not d.heldout}.isdisjoint(held_eps)
    train_targets = {d.text[s:d.text.find("\n", s)] for d in corpus.train for s in d.lines}
    for doc in corpus.docs:
        if doc.episode_id in held_eps:
            noun = doc.path.removeprefix("shop/").removesuffix("s.py")
            assert f"def create_{noun}({noun}_id, amount_cents):" not in train_targets  # only it wrote this
    assert "@log_call" in train_targets and "from shop.log import log_call" in train_targets  # conventions


def test_a_new_commit_leaves_the_split_of_earlier_files_alone(history, tmp_path):
    root, store, rid = history
    before = {d.path: d.heldout for d in mine_code(root, heldout_fraction=FRACTION).docs}
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    (clone / "shop" / "ledger.py").write_text("from shop.log import log_call\n\n\n@log_call\ndef post():\n    pass\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "ledger")
    after = {d.path: d.heldout for d in mine_code(clone, heldout_fraction=FRACTION).docs}
    assert {p: h for p, h in after.items() if p in before} == before and "shop/ledger.py" in after


def test_a_small_repository_still_holds_out_one_file():
    assert heldout_paths(["a.py"], 0.2) == frozenset() and heldout_paths(["a.py", "b.py"], 0.0) == frozenset()
    names = [f"m{i}.py" for i in range(40)]
    hashed = [n for n in names if heldout_file(n, 0.2)]
    others = [n for n in names if not heldout_file(n, 0.2)]
    stand_in, = heldout_paths(others[:3], 0.2)  # none hashes into the held-out share: one stands in
    assert stand_in in others[:3] and heldout_paths(others[:3], 0.2) == heldout_paths(list(reversed(others[:3])), 0.2)
    # a new file that hashes in takes over, and the stand-in goes (back) to training, never the reverse
    assert heldout_paths(others[:3] + hashed[:1], 0.2) == frozenset(hashed[:1])


def test_build_pairs_keeps_held_out_files_out_of_training_episodes(history):
    root, store, rid = history
    held = mine_code(root, heldout_fraction=FRACTION).is_heldout_file
    plain_train, plain_held = build_pairs(store, rid, heldout_fraction=FRACTION)
    train, heldout = build_pairs(store, rid, heldout_fraction=FRACTION, heldout_files=held)
    assert [p.episode_id for p in heldout] == [p.episode_id for p in plain_held]  # held-out episodes as before
    for pair in train:
        assert not any(held(path) and path in (pair.target or "") for path in code_pairs.head_files(root))
    # an episode that only touched held-out files has nothing left to train on; which episodes
    # those are depends on the hashed episode ids (the repository's path), so it is counted here
    only_held = {p.episode_id for p in plain_train if all(held(f) for f in diff_files(p.target))}
    assert sorted(p.episode_id for p in train) == sorted(p.episode_id for p in plain_train
                                                         if p.episode_id not in only_held)
    # and on a split chosen to hit a training episode, whatever the ids hash to
    lone = next(p for p in plain_train if len(diff_files(p.target)) == 1)
    dropped, = diff_files(lone.target)
    chosen, _ = build_pairs(store, rid, heldout_fraction=FRACTION, heldout_files=lambda f: f == dropped)
    assert lone.episode_id not in {p.episode_id for p in chosen} and len(chosen) < len(plain_train)


def test_to_pairs_are_text_form_and_encode_context_then_a_blank_line(history, tiny_model_dir):
    from transformers import AutoTokenizer

    from learnagent.learning.rollout import encode

    root, store, rid = history
    sample = mine_code(root, heldout_fraction=FRACTION).samples(per_doc=1)[0]
    pair, = to_pairs([sample])
    assert pair.mode == "text" and pair.prompt == sample.prefix and pair.target == sample.target
    assert pair.episode_id == f"file:{sample.path}"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert encode(tok, pair.prompt)[0].tolist() == tok(sample.prefix)["input_ids"]
    assert encode(tok, pair.prompt, pair.context)[0].tolist() == tok(sample.context + "\n\n" + sample.prefix)["input_ids"]


def test_without_a_checkout_the_documents_are_what_the_store_holds(tmp_path):
    """mine_code(None, ...): no HEAD; a created file is whole, an edited file is the new side of its
    hunks (its earlier text is in no `do` episode), the added lines are what is predicted; the
    held-out side (by file, and a held-out episode) is never a training document."""
    from learnagent.learning.code_pairs import hunk_text, mine_code
    from learnagent.learning.pairs import is_heldout
    from learnagent.store.episodes import Store

    edit = ["@@ -3,2 +3,3 @@", " x = 1", "-y = 2", "+y = 3", "+z = y * 2", "@@ -9,1 +10,2 @@", " def f():",
            "+    return z"]
    assert hunk_text(edit) == ("x = 1\ny = 3\nz = y * 2\n\ndef f():\n    return z\n", [1, 2, 5])
    assert hunk_text(["@@ -1,1 +1,0 @@", "-gone = 1"]) is None

    with Store(tmp_path / "s.db") as store:
        rid = store.ensure_repo(folder_repository(tmp_path))
        ids = [eid for eid in (f"e{i:04d}" for i in range(60)) if not is_heldout(eid, 0.2)][:3]
        held = next(eid for eid in (f"e{i:04d}" for i in range(60)) if is_heldout(eid, 0.2))
        diffs = {ids[0]: "--- /dev/null\n+++ b/a.py\n@@ -0,0 +1,2 @@\n+def alpha_value():\n+    return 1\n",
                 ids[1]: "--- /dev/null\n+++ b/b.py\n@@ -0,0 +1,2 @@\n+def beta_value():\n+    return 2\n",
                 ids[2]: "--- a/a.py\n+++ b/a.py\n@@ -1,2 +1,4 @@\n def alpha_value():\n     return 1\n+\n"
                         "+ALPHA_CONSTANT = alpha_value()\n",
                 held: "--- /dev/null\n+++ b/c.py\n@@ -0,0 +1,1 @@\n+GAMMA_CONSTANT_NAME = 3\n"}
        for eid, diff in diffs.items():
            store.create_episode(rid, "t", episode_id=eid)
            store.finish_episode(eid, "finished", final_diff=diff)
            store.set_outcome(eid, "accepted")
        corpus = mine_code(None, store, rid)
    assert corpus.root is None and corpus.conventions == ""
    # a.py as its newest change shows it (the hunk's new side), b.py whole; c.py only a held-out episode wrote
    assert corpus.files == {"a.py": "def alpha_value():\n    return 1\n\nALPHA_CONSTANT = alpha_value()\n",
                            "b.py": "def beta_value():\n    return 2\n"}
    assert corpus.heldout, "two files: one is held out"
    held_paths = {d.path for d in corpus.heldout}
    assert "c.py" in held_paths and not any(d.path in held_paths for d in corpus.train)
    assert all(d.episode_id != held for d in corpus.train)
