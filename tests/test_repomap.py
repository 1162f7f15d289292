"""Repo map: real tree-sitter on files written into real git repositories."""

import os
import subprocess
from pathlib import Path

import pytest

from learnagent.agent.repomap import RepoMap, mentions_from_text
from learnagent.agent.repomap_tags import list_source_files
from learnagent.core.errors import NotAGitRepo
from learnagent.core.repository import Repository


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


SOURCES = {
    "py/store.py": (
        "from .db import Connection\n\n"
        "class Store(Base):\n"
        "    def save(self, item: Item) -> None:\n"
        "        Connection.open().write(item)\n\n"
        "def make_store():\n"
        "    return Store()\n"
    ),
    "js/app.js": (
        'import { Router } from "./router";\n'
        "export class App extends Base {\n"
        "  start() { return new Router().listen(3); }\n"
        "}\n"
        "const handler = (req) => respond(req);\n"
        "function main() { return <Page/>; }\n"
    ),
    "ts/repo.ts": (
        "export interface Repo { find(id: string): User; }\n"
        "type Id = string;\n"
        "export class UserRepo extends BaseRepo implements Repo {\n"
        "  find(id: Id): User { return this.db.query(id); }\n"
        "}\n"
        "export function load(): Repo { return new UserRepo(connect()); }\n"
    ),
    "ts/view.tsx": (
        "export function Page(props: Props) { return <Layout title={props.title} />; }\n"
    ),
    "go/store.go": (
        "package store\n"
        "type Store struct { db *DB }\n"
        "type Getter interface { Get(k string) (Value, error) }\n"
        "func NewStore(db *DB) *Store { return &Store{db: db} }\n"
        "func (s *Store) Get(k string) (Value, error) {\n"
        "\treturn s.db.Lookup(k)\n"
        "}\n"
    ),
    "rs/store.rs": (
        "pub struct Store { db: Db }\n"
        "pub trait Getter { fn get(&self, k: &str) -> Row; }\n"
        "impl Getter for Store {\n"
        "    fn get(&self, k: &str) -> Row { self.db.lookup(k) }\n"
        "}\n"
        "pub fn new_store() -> Store { Store { db: Db::open() } }\n"
    ),
    "java/Store.java": (
        "public class Store implements Getter {\n"
        "    private Db db;\n"
        "    public Row get(String k) { return db.lookup(k); }\n"
        "}\n"
        "interface Getter { Row get(String k); }\n"
    ),
}

EXPECTED = {  # file: (definitions that must be found, references that must be found)
    "py/store.py": ({"Store", "save", "make_store"}, {"Connection", "Base", "Item", "write", "open"}),
    "js/app.js": ({"App", "start", "handler", "main"}, {"Router", "listen", "respond", "Base", "Page"}),
    "ts/repo.ts": ({"Repo", "find", "Id", "UserRepo", "load"}, {"User", "BaseRepo", "query", "connect"}),
    "ts/view.tsx": ({"Page"}, {"Props", "Layout"}),
    "go/store.go": ({"Store", "Getter", "Get", "NewStore"}, {"DB", "Value", "Lookup"}),
    "rs/store.rs": ({"Store", "Getter", "get", "new_store"}, {"Db", "Row", "lookup", "open"}),
    "java/Store.java": ({"Store", "Getter", "get"}, {"Db", "Row", "String", "lookup"}),
}


@pytest.fixture(scope="module")
def polyglot_tags(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("poly") / "repo", SOURCES)
    return RepoMap(root, cache_dir=root.parent / "cache").tags()


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_definitions_and_references_per_language(polyglot_tags, path):
    tags = polyglot_tags[path]
    defs, refs = EXPECTED[path]
    assert defs <= {d.name for d in tags.definitions}
    assert refs <= set(tags.references)
    # A definition's own name is not counted as a use of it.
    assert "make_store" not in polyglot_tags["py/store.py"].references


def test_methods_carry_their_enclosing_scope(polyglot_tags):
    py = {d.name: d for d in polyglot_tags["py/store.py"].definitions}
    assert py["save"].scope == (py["Store"].line,)
    assert py["Store"].kind == "class" and py["make_store"].kind == "function"
    rust_get = [d for d in polyglot_tags["rs/store.rs"].definitions if d.name == "get"]
    assert any(d.scope == (2,) for d in rust_get)  # inside `impl Getter for Store {` on line 2
    go = {d.name: d.kind for d in polyglot_tags["go/store.go"].definitions}
    assert go["Store"] == "struct" and go["Getter"] == "interface"


def ranking_repo(tmp_path):
    """billing.py uses models.py and money.py; six other files only use each other."""
    files = {
        "billing.py": (
            "from models import Invoice, Customer\nfrom money import round_cents\n\n"
            "def charge_customer(customer: Customer, amount):\n"
            "    invoice = Invoice(customer, round_cents(amount))\n"
            "    return invoice.finalize_invoice()\n"
        ),
        "models.py": (
            "class Customer:\n    def __init__(self, name):\n        self.name = name\n\n"
            "class Invoice:\n    def finalize_invoice(self):\n        return self\n"
        ),
        "money.py": "def round_cents(value):\n    return round(value, 2)\n",
    }
    for i in range(6):
        nxt = (i + 1) % 6
        files[f"plugins/plugin_{i}.py"] = (
            f"from plugins.plugin_{nxt} import plugin_hook_{nxt}\n\n"
            f"def plugin_hook_{i}(event):\n"
            f"    return plugin_hook_{nxt}(event) + plugin_hook_{nxt}(event)\n"
        )
    return make_repo(tmp_path / "repo", files)


def file_order(text: str) -> list[str]:
    return [line.rstrip(":") for line in text.splitlines() if line and line[0] not in "│⋮"]


def test_ranking_prefers_mentioned_file_and_what_it_references(tmp_path):
    repo = ranking_repo(tmp_path)
    rm = RepoMap(repo, cache_dir=tmp_path / "cache")
    plain = file_order(rm.render(2000))
    assert set(plain[:3]) != {"billing.py", "models.py", "money.py"}  # the plugin ring dominates

    focused = file_order(rm.render(2000, mentioned_files={"billing.py"}))
    assert set(focused[:3]) == {"billing.py", "models.py", "money.py"}
    ranked = rm.ranked(mentioned_files={"billing.py"})
    top_defs = {d.name for _, d in ranked[:6] if d is not None}
    assert {"Invoice", "Customer", "round_cents"} <= top_defs


def test_mentioned_identifier_boosts_its_definer(tmp_path):
    repo = ranking_repo(tmp_path)
    rm = RepoMap(repo, cache_dir=tmp_path / "cache")
    path, first = rm.ranked(mentioned_idents={"round_cents"})[0]
    assert (path, first.name) == ("money.py", "round_cents")


def test_output_respects_and_grows_with_the_token_budget(tmp_path):
    repo = ranking_repo(tmp_path)
    words = lambda text: len(text.split())  # noqa: E731 - a deliberately different counter
    rm = RepoMap(repo, cache_dir=tmp_path / "cache", count_tokens=words)
    sizes = []
    for budget in (15, 40, 80, 1000):
        text = rm.render(budget)
        assert 0 < words(text) <= budget
        sizes.append(words(text))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    full = rm.render(1000)
    assert "│def charge_customer(customer: Customer, amount):" in full
    assert "│class Invoice:\n│    def finalize_invoice(self):" in full
    assert len(file_order(full)) == 9  # every file at least named when the budget allows
    assert rm.render(0) == ""
    # Default counter: len/4.
    assert len(RepoMap(repo, cache_dir=tmp_path / "c2").render(60)) // 4 <= 60


def test_cache_reparses_only_changed_files(tmp_path):
    repo = ranking_repo(tmp_path)
    cache = tmp_path / "cache"
    first = RepoMap(repo, cache_dir=cache)
    first.render(500)
    assert (first.stats.parsed, first.stats.cache_hits) == (9, 0)
    assert list(cache.glob("*.sqlite"))

    second = RepoMap(repo, cache_dir=cache)  # a new process would see exactly this
    before = second.render(500)
    assert (second.stats.parsed, second.stats.cache_hits) == (0, 9)
    assert before == first.render(500)

    money = repo / "money.py"
    money.write_text("def round_cents(value):\n    return round(value, 2)\n\n"
                     "def to_euros(v):\n    return v\n")
    st = money.stat()
    os.utime(money, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second.render(500)
    assert (second.stats.parsed, second.stats.cache_hits) == (1, 8)
    assert "to_euros" in {d.name for d in second.tags()["money.py"].definitions}
    third = RepoMap(repo, cache_dir=cache)
    third.tags()
    assert (third.stats.parsed, third.stats.cache_hits) == (0, 9)

    (repo / "money.py").unlink()
    subprocess.run(["git", "rm", "-q", "--cached", "money.py"], cwd=repo, check=True)
    assert "money.py" not in third.tags()


def test_binary_huge_unknown_vendored_and_broken_files_are_skipped(tmp_path):
    repo = make_repo(tmp_path / "repo", {
        "ok.py": "def fine():\n    return broken_helper()\n",
        "blob.py": b"\x00\x01binary\x00" * 100,
        "huge.py": "x = 1\n" * 200_000,  # 1.2 MB
        "notes.xyz": "def not_code(): pass\n",
        "vendor/lib.py": "def vendored(): pass\n",
        "web/node_modules/pkg/index.js": "function dep() {}\n",
        "web/app.min.js": "function a(){}" * 10,
        "bundle.js": "var x=" + "1+" * 6000 + "1;\n",  # one long generated line
        "broken.py": "def broken_helper(:\n    return (\n\nclass Fine:\n    pass\n",
    })
    (repo / "untracked.py").write_text("def brand_new(): pass\n")
    (repo / ".venv" / "lib").mkdir(parents=True)
    (repo / ".venv" / "lib" / "junk.py").write_text("def junk(): pass\n")

    listed = list_source_files(repo)
    assert listed == ["blob.py", "broken.py", "bundle.js", "huge.py", "ok.py", "untracked.py"]
    rm = RepoMap(repo, cache_dir=tmp_path / "cache")
    tags = rm.tags()
    assert set(tags) == {"ok.py", "broken.py", "untracked.py"}
    assert rm.stats.skipped == 3
    assert "Fine" in {d.name for d in tags["broken.py"].definitions}  # partial tags despite errors
    assert "ok.py" in rm.render(200)


def test_not_a_git_repo_is_a_clear_error(tmp_path):
    with pytest.raises(NotAGitRepo, match="not a git repository"):
        RepoMap(tmp_path, cache_dir=tmp_path / "cache").render()


def test_mentions_from_text():
    files = ["store/episodes.py", "core/home.py", "a/util.py", "b/util.py", "README.md"]
    found, idents = mentions_from_text(
        "Fix new_episode_id in store/episodes.py, see home.py and util.py. Update README.md.", files)
    assert found == {"store/episodes.py", "core/home.py", "README.md"}  # util.py is ambiguous
    assert {"new_episode_id", "Fix", "home"} <= idents
    assert "in" not in idents
    assert "store" not in idents and "episodes" not in idents  # parts of a path, not identifiers
    _, idents = mentions_from_text("Call Store.save() then run `make_store`", files)
    assert {"Store", "save", "make_store"} <= idents


def test_parallel_parse_matches_serial(tmp_path, monkeypatch):
    from learnagent.agent import repomap_tags

    repo = make_repo(tmp_path / "repo", SOURCES)
    rels = sorted(SOURCES) + ["missing.py"]
    serial = repomap_tags.parse_files(repo, rels)
    monkeypatch.setattr(repomap_tags, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(repomap_tags.os, "cpu_count", lambda: 2)

    def not_in_this_process(*args):
        raise AssertionError("parsed in the parent, not in a worker")

    monkeypatch.setattr(repomap_tags, "parse_file", not_in_this_process)  # workers import afresh
    parallel = repomap_tags.parse_files(repo, rels)
    assert parallel == serial and serial[-1] is None and all(serial[:-1])


def test_worktrees_share_a_content_keyed_cache(tmp_path):
    """Each `do` runs in a fresh worktree (new mtimes everywhere): the cache must still hit."""
    repo = ranking_repo(tmp_path)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    cache = tmp_path / "cache"
    main = RepoMap(repo, cache_dir=cache, shared_with=Repository.at(repo))
    expected = main.render(500)
    assert main.stats.parsed == 9
    for name in ("wt1", "wt2"):
        wt = tmp_path / name
        subprocess.run(["git", "worktree", "add", "-q", "-b", name, str(wt)], cwd=repo, check=True)
        rmap = RepoMap(wt, cache_dir=cache, shared_with=Repository.at(repo))
        assert rmap.render(500) == expected
        assert (rmap.stats.parsed, rmap.stats.cache_hits) == (0, 9)
    # an edit in a worktree (same size, same mtime second) is caught by its content, not its stamp
    money = tmp_path / "wt2" / "money.py"
    money.write_text(money.read_text().replace("round_cents", "round_pence"))
    rmap = RepoMap(tmp_path / "wt2", cache_dir=cache, shared_with=Repository.at(repo))
    rmap.tags()
    assert (rmap.stats.parsed, rmap.stats.cache_hits) == (1, 8)
    assert "round_pence" in {d.name for d in rmap.tags()["money.py"].definitions}


def test_changed_queries_invalidate_the_cache(tmp_path, monkeypatch):
    from learnagent.agent import repomap_tags

    repo = make_repo(tmp_path / "repo", {"a.py": "def f(): pass\n", "b.py": "def g(): f()\n"})
    RepoMap(repo, cache_dir=tmp_path / "cache").tags()
    monkeypatch.setattr(repomap_tags, "queries_version", lambda: "a-newer-query-set")
    again = RepoMap(repo, cache_dir=tmp_path / "cache")
    again.tags()
    assert (again.stats.parsed, again.stats.cache_hits) == (2, 0)


def test_pagerank_agrees_with_networkx():
    import networkx as nx
    from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python

    from learnagent.agent.repomap import pagerank

    edges = [("a", "b", "x", 2.0), ("a", "c", "y", 1.0), ("b", "c", "z", 1.0),
             ("c", "a", "w", 0.5), ("a", "b", "v", 1.0), ("d", "d", "u", 0.1)]
    nodes = ["a", "b", "c", "d", "e"]  # e is dangling
    graph = nx.MultiDiGraph()
    graph.add_nodes_from(nodes)
    for src, dst, ident, weight in edges:
        graph.add_edge(src, dst, weight=weight, ident=ident)
    for personal in ({}, {"b": 1.0}, {"a": 2.0, "e": 1.0}):
        expected = _pagerank_python(graph, weight="weight", personalization=personal or None,
                                    dangling=personal or None, tol=1e-12, max_iter=1000)
        got = pagerank(nodes, edges, personal, tol=1e-12, max_iter=1000)
        assert got == pytest.approx(expected, abs=1e-6)


def test_a_corrupt_cache_only_costs_a_reparse(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.py": "def f(): pass\n", "b.py": "def g(): f()\n"})
    first = RepoMap(repo, cache_dir=tmp_path / "cache")
    first.cache_file.parent.mkdir(parents=True)
    first.cache_file.write_bytes(b"this is not a database" * 100)
    assert "a.py" in first.render(100)
    assert first.stats.parsed == 2


def test_ignored_files_give_no_definitions_to_the_map(tmp_path):
    """issue 10: a default-ignored file (`secrets.py`, `*.key`) and a `.learnagentignore` path are not in the
    map, tracked or untracked, however strongly the task points at them; the files next to them are."""
    repo = make_repo(tmp_path / "repo", {
        "app.py": "from secrets import load_vault_password\n\ndef start_app():\n    return load_vault_password()\n",
        "secrets.py": "def load_vault_password():\n    return 'x'\n",  # default: secrets.*
        "private/keys.py": "def private_signing_helper():\n    pass\n",  # the user's .learnagentignore
        ".learnagentignore": "private/\n",
    })
    (repo / "settings.secret").write_text("def not_even_python(): pass\n")
    (repo / "secrets").mkdir()
    (repo / "secrets" / "vault.py").write_text("def vault_master_key():\n    pass\n")  # untracked
    (repo / ".learnagentignore").write_text("private/\nsecrets/\n")  # uncommitted rules count at once

    assert list_source_files(repo) == ["app.py"]
    rm = RepoMap(repo, cache_dir=tmp_path / "cache")
    text = rm.render(4000, mentioned_files={"secrets.py", "private/keys.py"},
                     mentioned_idents={"load_vault_password", "private_signing_helper", "vault_master_key"})
    assert "start_app" in text
    for name in ("secrets.py", "def load_vault_password", "private_signing_helper", "vault_master_key"):
        assert name not in text


def click_like_repo(root: Path) -> Path:
    """A repository shaped like click's: its real source (the click installed with our
    dependencies) under src/click, and a test module whose commands are called `foo` and `bar`,
    as click's own tests are."""
    import shutil

    import click

    src = Path(click.__file__).parent
    shutil.copytree(src, root / "src" / "click", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    tests = {"tests/test_arguments.py": (
        "import click\n\n\n"
        "def test_nested_subcommand(runner):\n"
        "    @click.group()\n    def cli():\n        pass\n\n"
        "    @cli.command()\n    @click.argument('arg')\n    def foo(arg):\n        click.echo(arg)\n\n"
        "    @cli.command()\n    @click.argument('arg')\n    def bar(arg):\n        click.echo(arg.upper())\n\n"
        "    result = runner.invoke(cli, ['bar', 'x'])\n    assert result.output == 'X\\n'\n")}
    return make_repo(root, tests)


def test_a_concept_named_in_words_finds_its_code(tmp_path):
    """Issue 11: "look at the progress bar" left out `ProgressBar` and `_termui_impl.py` and ranked
    a test's `def bar` first. Sub-word matching meets ProgressBar/progressbar; `bar` alone is a
    part of the phrase, not what it names."""
    repo = click_like_repo(tmp_path / "repo")
    rm = RepoMap(repo, cache_dir=tmp_path / "cache")
    task = "look at the progress bar"
    files, words = mentions_from_text(task, list_source_files(repo))
    ranked = [(p, d.name) for p, d in rm.ranked(files, words) if d is not None]
    assert ranked[0] == ("src/click/_termui_impl.py", "ProgressBar")
    assert ("src/click/termui.py", "progressbar") in ranked[:5]
    assert ("tests/test_arguments.py", "bar") not in ranked[:20]
    shown = file_order(rm.render(1024, files, words))
    assert shown[:2] == ["src/click/_termui_impl.py", "src/click/termui.py"]


def test_sub_word_matching_rules():
    from learnagent.agent.repomap_match import TermIndex, code_like, stem, subwords, task_terms

    assert subwords("HTTPServer") == ["http", "server"] and subwords("_termui_impl") == ["termui", "impl"]
    assert subwords("ProgressBar") == ["progress", "bar"] and subwords("parse_v2") == ["parse", "v", "2"]
    assert {stem(w) for w in ("bars", "bar")} == {"bar"}
    assert len({stem(w) for w in ("render", "rendering", "rendered", "renders")}) == 1
    assert len({stem(w) for w in ("wrap", "wrapping", "wraps")}) == 1
    assert stem("progress") == "progress" and stem("class") == "class" and stem("status") == "status"
    seq, compounds = task_terms(["Look", "at", "the", "progress", "bars"])
    assert seq == ["progress", "bar"] and compounds == {"progressbar": ("progress", "bar")}
    assert code_like("round_cents") and code_like("ProgressBar") and code_like("utf8")
    assert not code_like("bar") and not code_like("Store")
    index = TermIndex(["ProgressBar", "progressbar", "bar", "bar_template", "get_value", "render_progress"])
    names, files = index.match(["the", "progress", "bar"], ["src/progress_bar.py", "src/other.py"])
    assert min(names["ProgressBar"], names["progressbar"]) > 0.5
    assert "bar" not in names  # half of the phrase "progress bar": a false friend
    assert "get_value" not in names and set(files) == {"src/progress_bar.py"}
    names, _ = index.match(["fix", "bar_template"])
    assert names["bar_template"] == 1.0  # written as code: exactly that name
