"""`learnagent sleep --store URL --repo NAME`: a night for a repository known only from a team store
(real PostgreSQL, the tiny model, real training), run from a folder that is no git checkout."""

import json

import pytest
import typer
from typer.testing import CliRunner

from cli_helpers import run_cli
from conftest import git
from learnagent.core.repository import StoredRepository
from learnagent.learning.pairs import is_heldout
from learnagent.store.episodes import Store
from learnagent.core.repository import Repository

TEAM_NAME = "github.com/acme/calc"
FAST = dict(samples_per_prompt=1, max_new_tokens=6, rank=4, low_priority=False, checkpoint_every=1)


def _new_file(path: str, body: str) -> str:
    lines = body.splitlines()
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{line}\n" for line in lines))


EDIT_CALC = ("diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,6 @@\n"
             " def add(a, b):\n     return a + b\n+\n+\n+def sub(a: int, b: int) -> int:\n+    return a - b\n")


def _accepted_do_episodes(local, repo) -> tuple[list[str], list[str]]:
    """Accepted `do` episodes on the laptop: new modules, and one edit of calc.py (its earlier text
    is in no episode: without a checkout only its hunk is known). Returns (training ids, held-out ids)."""
    rid = local.ensure_repo(Repository.at(repo))
    diffs = [_new_file(f"pkg/mod_{i}.py", f"def helper_{i}(value: int) -> int:\n    return value * {i}\n\n\n"
                       f"def check_{i}(value: int) -> bool:\n    return helper_{i}(value) > {i}\n") for i in range(4)]
    diffs.append(EDIT_CALC)
    train, held, i = [], [], 0
    for diff in diffs:
        while True:  # ids chosen so that the last new module's episode is held out and the others train
            eid = f"261130{i:06d}aaaaaa"
            i += 1
            if is_heldout(eid, 0.2) == (diff is diffs[-2]):
                break
        local.create_episode(rid, f"task {eid}", episode_id=eid)
        local.add_message(eid, 0, "user", "please")
        local.finish_episode(eid, "finished", final_diff=diff, summary="done")
        local.set_outcome(eid, "accepted")
        (held if diff is diffs[-2] else train).append(eid)
    return train, held


@pytest.fixture
def team_store(git_repo, pg_url):
    """The laptop's episodes of `git_repo`, pushed to a fresh PostgreSQL team store."""
    from learnagent.services import team

    git(git_repo, "remote", "add", "origin", "git@github.com:acme/calc.git")
    with Store() as local, Store(pg_url) as shared:
        ids = _accepted_do_episodes(local, git_repo)
        assert team.join(local, Repository.at(git_repo), None) == TEAM_NAME
        result = team.push(local, shared, pg_url)
    assert sorted(result.sent) == sorted(ids[0] + ids[1])
    return pg_url, ids


def test_sleep_from_the_team_store_without_a_checkout(team_store, tiny_model_dir, tmp_path, monkeypatch):
    from learnagent.cli.learn_cmds import register
    from learnagent.learning import sleep as sleep_mod
    from learnagent.learning.gate import GateConfig
    from learnagent.learning.registry import promoted_adapter

    url, (train_ids, held_ids) = team_store
    elsewhere = tmp_path / "gpu-box"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no git checkout here, and the laptop's checkout is never read:
    monkeypatch.setattr("learnagent.learning.code_pairs.head_files", None)  # calling it would fail

    class Fast(sleep_mod.SleepOptions):  # the real trainer and gate, at the sizes tests use
        def __init__(self, **kw):
            super().__init__(**kw, train_overrides=FAST,
                             gate=GateConfig(samples=1, max_new_tokens=6, drift_max_new_tokens=6))

    monkeypatch.setattr(sleep_mod, "SleepOptions", Fast)
    app = typer.Typer()
    register(app)
    dry = CliRunner().invoke(app, ["sleep", "--store", url, "--repo", TEAM_NAME, "--dry-run",
                                   "--model", f"local:{tiny_model_dir}"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0 and "would train (next version) with opsd" in dry.output, dry.output
    with Store(url) as team:
        assert team.adapters(TEAM_NAME) == []
    out = CliRunner().invoke(app, ["sleep", "--store", url, "--repo", TEAM_NAME, "--steps", "2",
                                   "--model", f"local:{tiny_model_dir}"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "from the store's accepted changes (no checkout)" in out.output
    assert "sleep: v0001" in out.output
    assert "files, from the store's accepted changes (no checkout)" in out.output  # the table says it too

    repo = StoredRepository(TEAM_NAME, "calc")
    with Store(url) as team:  # the registry and the night's states are in the team store
        states = [r["state"] for r in team.conn.execute(
            "SELECT state FROM sleep_steps WHERE repo_id = ? AND version = 'v0001' ORDER BY seq", (TEAM_NAME,))]
        assert states == ["reserved", "planned", "trained", "gated", "sealed", "decided"]
        decided = json.loads(team.conn.execute("SELECT data FROM sleep_steps WHERE repo_id = ? AND state = 'decided'",
                                               (TEAM_NAME,)).fetchone()["data"])
        row = team.adapter(TEAM_NAME, "v0001")
        assert row.status == decided["status"] and row.reason == decided["reason"] and row.reason
        lineage = set(team.adapter_episode_ids(TEAM_NAME, "v0001"))
        # the training episodes, never the held-out one (an episode whose only file is held out has no pair left)
        assert lineage and lineage <= set(train_ids) and not lineage & set(held_ids)
        assert row.metrics["heldout_ids"] == held_ids
        code = row.metrics["code"]
        assert code["documents"] >= 1 and code["variants"]["adapter"]["lines"] > 0
    assert decided["reason"] in out.output
    assert (repo.adapters_dir / "v0001" / "lineage.json").is_file()
    assert (promoted_adapter(repo) or (None,))[0] == ("v0001" if decided["status"] == "promoted" else None)

    listed = CliRunner().invoke(app, ["adapters", "list", "--store", url, "--repo", "calc", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(r["version"], r["status"]) for r in json.loads(listed.stdout)] == [("v0001", decided["status"])]

    measured = CliRunner().invoke(app, ["eval", "--store", url, "--repo", TEAM_NAME, "--adapter", "v0001",
                                        "--model", f"local:{tiny_model_dir}", "--json"])
    assert measured.exit_code == 0, measured.output
    report = json.loads(measured.stdout)
    assert report["adapter"] == "v0001" and report["code"]["documents"] == code["documents"]
    assert report["code"]["variants"]["adapter"]["lines"] == code["variants"]["adapter"]["lines"]

    again = CliRunner().invoke(app, ["sleep", "--store", url, "--repo", TEAM_NAME, "--model", f"local:{tiny_model_dir}"],
                               env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert ("nothing new to learn since v0001" if decided["status"] == "promoted" else "already tried these") \
        in again.output, again.output


def test_sleep_from_a_store_refuses_bad_input_in_one_line(team_store, tiny_model_dir, tmp_path):
    url, _ = team_store
    elsewhere = tmp_path / "gpu-box"
    elsewhere.mkdir()
    model = f"local:{tiny_model_dir}"

    def one_line(proc, code: int, *words: str) -> None:
        assert proc.returncode == code, proc.stdout + proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert all(w in lines[0] for w in words), lines[0]

    one_line(run_cli("sleep", "--store", url, "--repo", "github.com/acme/nope", "--model", model, cwd=elsewhere),
             2, "--repo github.com/acme/nope", "no such repository", TEAM_NAME)
    one_line(run_cli("sleep", "--store", "mysql://x/y", "--repo", TEAM_NAME, cwd=elsewhere), 2, "unsupported store")
    one_line(run_cli("sleep", "--store", url, cwd=elsewhere), 2, "--repo NAME")
    one_line(run_cli("sleep", "--store", str(tmp_path / "none.db"), "--repo", TEAM_NAME, cwd=elsewhere),
             2, "no such store file")
    assert not (tmp_path / "none.db").exists()
    one_line(run_cli("sleep", "--store", url, "--repo", TEAM_NAME, "--install-schedule", cwd=elsewhere),
             2, "--install-schedule goes with a checkout")
    # no --store: the configured store (LEARNAGENT_DB), here the team's
    proc = run_cli("adapters", "list", "--repo", TEAM_NAME, cwd=elsewhere, env={"LEARNAGENT_DB": url})
    assert proc.returncode == 0 and "no adapters yet" in proc.stdout, proc.stdout + proc.stderr
    unreachable = "postgresql://learnagent:secret@127.0.0.1:1/team"
    proc = run_cli("sleep", "--store", unreachable, "--repo", TEAM_NAME, "--model", model, cwd=elsewhere)
    one_line(proc, 1, "127.0.0.1")
    assert "secret" not in proc.stderr


def test_sleep_from_a_store_with_too_little_code_for_a_gate_is_a_usage_error(git_repo, pg_url, tiny_model_dir,
                                                                            tmp_path):
    """Accepted changes that touched one code file: without a checkout nothing can be held out."""
    from learnagent.services import team

    git(git_repo, "remote", "add", "origin", "git@github.com:acme/calc.git")
    with Store() as local, Store(pg_url) as shared:
        rid = local.ensure_repo(Repository.at(git_repo))
        ids = [eid for eid in (f"261130{n:06d}bbbbbb" for n in range(40)) if not is_heldout(eid, 0.2)][:3]
        for n, eid in enumerate(ids):  # all trained on: no held-out episode either
            local.create_episode(rid, f"task {n}", episode_id=eid)
            local.finish_episode(eid, "finished", final_diff=EDIT_CALC.replace("sub", f"sub{n}"), summary="done")
            local.set_outcome(eid, "accepted")
        team.join(local, Repository.at(git_repo), None)
        team.push(local, shared, pg_url)
    elsewhere = tmp_path / "gpu-box"
    elsewhere.mkdir()
    proc = run_cli("sleep", "--store", pg_url, "--repo", TEAM_NAME, "--model", f"local:{tiny_model_dir}",
                   cwd=elsewhere)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no held-out code" in proc.stderr and "Traceback" not in proc.stderr
    with Store(pg_url) as team_db:
        assert team_db.adapters(TEAM_NAME) == []  # nothing reserved
