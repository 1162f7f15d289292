"""The store's statements for a team store (issue 14): the repositories a user opted in, what was
pushed where, and copying one episode with everything hanging off it into another store.

Functions on `Store`s (store/episodes.py) rather than a mixin: a push holds two stores at once, the
laptop's and the team's. The rules (which episodes may leave the machine, what is withheld) are
services/team.py's; here are only the rows.
"""

from __future__ import annotations

import time
from typing import Literal

from learnagent.store.episodes import NEXT_EPISODE_SEQ

# what an episode brings along, in the order it is copied (children after their episode)
CHILD_TABLES = ("messages", "model_calls", "tool_calls", "test_runs", "outcome_events")
# text columns a push scrubs again (the redactor may have learnt a secret since the run was recorded)
TEXT_COLUMNS = {"episodes": ("task", "final_diff", "summary", "error", "outcome_reason", "meta"),
                "messages": ("content",), "tool_calls": ("args", "result"),
                "test_runs": ("command", "output_tail"), "outcome_events": ("detail",)}
# columns that stay on the laptop: the episode folder's path and branch name are the machine's own
LOCAL_ONLY = {"episodes": ("worktree", "branch")}


# ---- opt-in (learnagent team join / leave) ---------------------------------------------------------

def repo_path(store, repo_id: str) -> str | None:
    """Where the repository's main tree is on this machine (as recorded), None for an unknown id."""
    row = store.conn.execute("SELECT path FROM repos WHERE id = ?", (repo_id,)).fetchone()
    return None if row is None else row["path"]


def joined_repos(store) -> dict[str, str]:
    """repo_id -> the name the team store knows it by, for every repository opted in to push."""
    return {r["repo_id"]: r["team_name"] for r in store.conn.execute(
        "SELECT repo_id, team_name FROM team_repos ORDER BY team_name")}


def join(store, repo_id: str, team_name: str) -> None:
    store.conn.execute("INSERT INTO team_repos(repo_id, team_name, joined_at) VALUES (?,?,?)"
                       " ON CONFLICT(repo_id) DO UPDATE SET team_name = excluded.team_name",
                       (repo_id, team_name, time.time()))


def leave(store, repo_id: str) -> bool:
    return store.conn.execute("DELETE FROM team_repos WHERE repo_id = ?", (repo_id,)).rowcount > 0


# ---- what was pushed -------------------------------------------------------------------------------

def pushed(store, store_hash: str) -> dict[str, str]:
    """episode id -> the outcome it had when it was last pushed to the team store `store_hash`."""
    return {r["episode_id"]: r["outcome"] for r in store.conn.execute(
        "SELECT episode_id, outcome FROM pushed WHERE store_hash = ?", (store_hash,))}


def mark_pushed(store, store_hash: str, episode_id: str, outcome: str) -> None:
    store.conn.execute("INSERT INTO pushed(episode_id, store_hash, outcome, pushed_at) VALUES (?,?,?,?)"
                       " ON CONFLICT(episode_id, store_hash) DO UPDATE SET outcome = excluded.outcome,"
                       " pushed_at = excluded.pushed_at", (episode_id, store_hash, outcome, time.time()))


def pushable_episode_ids(store, repo_id: str) -> list[str]:
    """The repository's `do` episodes that have ended (history imports stay home: every clone has
    the commits, and the team machine imports them itself), oldest first."""
    return [r["id"] for r in store.conn.execute(
        "SELECT id FROM episodes WHERE repo_id = ? AND source = 'do' AND status != 'running'"
        " ORDER BY started_at, seq, id", (repo_id,))]


# ---- copying -----------------------------------------------------------------------------------------

def episode_rows(store, episode_id: str) -> dict[str, list[dict]]:
    """table -> rows (as dicts, without the children's own row ids nor the episode's `seq`) of one episode."""
    out = {"episodes": [dict(r) for r in store.conn.execute("SELECT * FROM episodes WHERE id = ?", (episode_id,))]}
    for row in out["episodes"]:
        row.pop("seq", None)  # the order it was written in here; the team store gives its own
    for table in CHILD_TABLES:
        order = "seq" if table == "messages" else "id"
        rows = [dict(r) for r in store.conn.execute(f"SELECT * FROM {table} WHERE episode_id = ? ORDER BY {order}",
                                                     (episode_id,))]
        for row in rows:
            row.pop("id", None)  # the team store numbers its own rows
        out[table] = rows
    return out


def ensure_team_repo(team, team_name: str) -> None:
    """The team store's row for a repository: keyed by its team name, the same from every clone."""
    team.conn.execute("INSERT INTO repos(id, path, name, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                      (team_name, team_name, team_name.rstrip("/").rsplit("/", 1)[-1], time.time()))


Inserted = Literal["new", "present", "clash"]


def insert_episode(team, rows: dict[str, list[dict]]) -> Inserted:
    """Write one episode's rows (from `episode_rows`, already filtered) into the team store: "new";
    "present" when it is there already from this author and machine (a push whose local mark was lost);
    "clash" when another machine's episode holds the id there (ids are the start second + 24 random
    bits: two episodes of one second clash once in 16.7 M), which is then not written. Call inside
    `team.transaction()`."""
    episode = rows["episodes"][0]
    held = team.conn.execute("SELECT author, machine FROM episodes WHERE id = ?", (episode["id"],)).fetchone()
    if held is not None:
        same = (held["author"], held["machine"]) == (episode.get("author"), episode.get("machine"))
        return "present" if same else "clash"
    for table in ("episodes", *CHILD_TABLES):
        for row in rows.get(table, []):
            columns, values = list(row), list(row.values())
            marks = ["?"] * len(columns)
            if table == "episodes":  # its seq: the order the team store received it in
                columns, marks = [*columns, "seq"], [*marks, NEXT_EPISODE_SEQ]
            team.conn.execute(f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join(marks)})", values)
    return "new"


def update_outcome(team, episode_id: str, outcome: str, reason: str | None) -> None:
    team.conn.execute("UPDATE episodes SET outcome = ?, outcome_reason = ? WHERE id = ?", (outcome, reason, episode_id))


def own_episode_ids(team, ids: list[str], author: str) -> list[str]:
    """Those of `ids` the team store holds with `author` as their author."""
    if not ids:
        return []
    return [r["id"] for r in team.conn.execute(
        f"SELECT id FROM episodes WHERE author = ? AND id IN ({','.join('?' * len(ids))})", (author, *ids))]

