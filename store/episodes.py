"""The episode store: everything `learnagent do` saw and did, and what became of it.

Every text goes through `self.scrub` before it is written, so that nothing the
redactor would remove (secrets) ever reaches the database.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable, ContextManager

from learnagent.core.errors import StoreError, UnknownEpisode
from learnagent.core.repository import Repository, StoredRepository
from learnagent.store.adapter_rows import AdapterRows
from learnagent.store.db import connect, is_postgres, store_target, transaction
from learnagent.store.outcome_rows import OutcomeRows
from learnagent.store.privacy_rows import PrivacyRows
from learnagent.store.records import (OUTCOMES, Episode, EpisodeStatus, Message, ModelCall, OutcomeName, TestRun,
                                      ToolCall, from_row)


ID_DRAWS = 5  # fresh ids create_episode tries before it gives up (each clash is 1 in 16M)
# episodes.seq of a new row (revision 0009): the order rows were written in, which breaks ties on
# the start time (NEWEST_FIRST). Written under the store's write lock (Store.transaction).
NEXT_EPISODE_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM episodes)"
NEWEST_FIRST = "e.started_at DESC, e.seq DESC, e.id DESC"
MIN_ID = 8  # shortest id prefix `log` prints (git prints 7 hex digits; ours start with the time)


def _id_time(at: float | None = None) -> str:
    return time.strftime("%y%m%d%H%M%S", time.gmtime(at))


def new_episode_id() -> str:
    """YYMMDDHHMMSS (UTC) + 6 random hex: ids sort like their start times, parallel runs differ,
    and they stay short enough to copy."""
    return _id_time() + uuid.uuid4().hex[:6]


def history_episode_id(repo_id: str, sha: str, authored_at: float, extra: int = 0) -> str:
    """The id of a commit imported into a repository: its author time + a hash of (repository,
    commit), so re-deriving it gives the same id, while another clone of the same repository
    (another repository key) gets another one. `extra` lengthens the hash after a clash."""
    return _id_time(authored_at) + hashlib.sha1(f"{repo_id}:{sha}".encode()).hexdigest()[:6 + extra]


class Store(PrivacyRows, AdapterRows, OutcomeRows):
    """Every SQL statement of learnagent, behind typed methods, on one connection (`self.conn`).

    The statements are grouped by what they serve: episodes here, the privacy ones in
    privacy_rows.py, the adapter registry's in adapter_rows.py, outcomes' in outcome_rows.py. Multi-statement writes run in
    `transaction()`.
    """

    def __init__(self, path: Path | str | None = None, scrub: Callable[[str], str] | None = None):
        target = path if path else store_target()  # LEARNAGENT_DB, [store] url, the data home's file
        self.dialect = "postgresql" if is_postgres(target) else "sqlite"
        self.path = None if self.dialect == "postgresql" else Path(target)  # the SQLite file
        self.url = str(target)
        self.conn = connect(target)
        self.scrub = scrub or _default_scrubber()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def transaction(self) -> ContextManager[None]:
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception; a nested one joins the outer one
        (store/db.py `transaction`)."""
        return transaction(self.conn)

    # ---- repositories -------------------------------------------------------------
    def sleep_steps(self, repo_id: str):
        """The persisted states of `sleep` for a repository (store/sleep_steps.py), on this connection."""
        from learnagent.store.sleep_steps import SleepSteps

        return SleepSteps(self.conn, repo_id)

    def ensure_repo(self, repo: Repository | StoredRepository) -> str:
        """The repository's key, its row made if new. `repo`: the Repository the CLI resolved (its
        main tree files the episodes of all its worktrees), or a StoredRepository (the store's own
        row). A bare path is a caller's bug: resolve it at the edge (`find_repository`, `Repository.at`)."""
        if isinstance(repo, StoredRepository):
            return repo.key
        if not isinstance(repo, Repository):
            raise TypeError(f"ensure_repo needs a Repository or StoredRepository, got {type(repo).__name__}")
        key, root, name = repo.key, repo.main_tree, repo.name
        self.conn.execute(
            "INSERT INTO repos(id, path, name, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
            (key, str(root), name, time.time()),
        )
        return key

    def find_stored_repo(self, name: str) -> StoredRepository | None:
        """The repository this store knows by `name`: its id (a pushed repository's team name, or a
        local key), else its short name when only one repository has it."""
        row = self.conn.execute("SELECT id, name FROM repos WHERE id = ?", (name,)).fetchone()
        if row is None:
            rows = self.conn.execute("SELECT id, name FROM repos WHERE name = ?", (name,)).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return None if row is None else StoredRepository(row["id"], row["name"])

    def repo_ids(self) -> list[str]:
        return [r["id"] for r in self.conn.execute("SELECT id FROM repos ORDER BY id")]

    def author_of(self, repo_id: str) -> str | None:
        """`git config user.email` as the repository sees it (its own config, then the user's), None
        when unset; asked once per repository and store."""
        cache = self.__dict__.setdefault("_authors", {})
        if repo_id not in cache:
            from learnagent.store.gitutil import git

            row = self.conn.execute("SELECT path FROM repos WHERE id = ?", (repo_id,)).fetchone()
            email = ""
            if row is not None and Path(row["path"]).is_dir():
                email = git(Path(row["path"]), "config", "user.email", check=False).strip()
            cache[repo_id] = email or None
        return cache[repo_id]

    # ---- writing an episode ---------------------------------------------------------
    def create_episode(self, repo_id: str, task: str, *, source: str = "do", base_commit: str | None = None,
                       branch: str | None = None, worktree: str | None = None, model: str | None = None,
                       adapter_version: str | None = None, meta: dict | None = None,
                       episode_id: str | None = None, started_at: float | None = None,
                       author: str | None = None, machine: str | None = None, redraw: bool = False) -> str:
        """A new episode row; returns its id. Without `episode_id` the id is drawn (`new_episode_id`),
        and drawn again while it is taken; with one, a taken id is the caller's error (IntegrityError),
        unless `redraw`: then the given id is only the first proposal. `author` defaults to the
        repository's `git config user.email` now, `machine` to this host's name (docs/TEAM.md).

        A taken id is found by `ON CONFLICT (id) DO NOTHING` and the row count, never by catching the
        duplicate-key error: on PostgreSQL that error marks the surrounding transaction failed (every
        later statement in it refused), so the caller's other writes would be lost with it."""
        author = author if author is not None else self.author_of(repo_id)
        machine = machine if machine is not None else socket.gethostname()
        values = (repo_id, source, self.scrub(task), base_commit, branch, worktree, model, adapter_version,
                  started_at or time.time(), self.scrub(json.dumps(meta or {})), author or None, machine)
        insert = ("INSERT INTO episodes(id, repo_id, source, task, base_commit, branch, worktree, model,"
                  f" adapter_version, started_at, meta, author, machine, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,"
                  f" {NEXT_EPISODE_SEQ})")
        with self.transaction():  # the write lock: the next seq is read and taken at once
            if episode_id is not None and not redraw:
                self.conn.execute(insert, (episode_id, *values))
                return episode_id
            for attempt in range(ID_DRAWS):
                # two runs in the same second drew the same random tail (1 in 16M), in this store or, on
                # a team's, on another machine: draw again
                eid = episode_id if attempt == 0 and episode_id is not None else new_episode_id()
                if self.conn.execute(insert + " ON CONFLICT (id) DO NOTHING", (eid, *values)).rowcount > 0:
                    return eid
        raise StoreError(f"no free episode id after {ID_DRAWS} draws (the last: {eid}); "
                         "the store is intact: this is a learnagent bug, please report it")

    def set_episode_place(self, episode_id: str, *, branch: str, worktree: str) -> None:
        """Where a `do` episode's folder and branch are (made after its row: the row decides the id)."""
        self.conn.execute("UPDATE episodes SET branch = ?, worktree = ? WHERE id = ?", (branch, worktree, episode_id))

    def mark_interrupted(self, episode_id: str, why: str, *, statuses: tuple[EpisodeStatus, ...]) -> bool:
        """Mark a run that will never finish (its process is gone) 'interrupted', when its status is one of
        `statuses`; an error and end time it already has are kept. Returns whether it was marked."""
        cur = self.conn.execute(
            "UPDATE episodes SET status = 'interrupted', ended_at = COALESCE(ended_at, ?), error = COALESCE(error, ?)"
            f" WHERE id = ? AND status IN ({','.join('?' * len(statuses))})",
            (time.time(), why, episode_id, *statuses))
        return cur.rowcount > 0

    def imported_commits(self, repo_id: str) -> set[str]:
        """The commits `history import` already made episodes of in this repository."""
        return {r["sha"] for r in self.conn.execute("SELECT sha FROM imported_commits WHERE repo_id = ?", (repo_id,))}

    def is_imported_commit(self, repo_id: str, sha: str) -> bool:
        return self.conn.execute("SELECT 1 FROM imported_commits WHERE repo_id = ? AND sha = ?",
                                 (repo_id, sha)).fetchone() is not None

    def add_imported_commit(self, repo_id: str, sha: str, episode_id: str) -> None:
        self.conn.execute("INSERT INTO imported_commits(repo_id, sha, episode_id) VALUES (?,?,?)",
                          (repo_id, sha, episode_id))

    def has_episode(self, episode_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM episodes WHERE id = ?", (episode_id,)).fetchone() is not None

    def add_message(self, episode_id: str, step: int, role: str, content: str, tokens: int | None = None) -> int:
        with self.transaction():
            seq = self.conn.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM messages WHERE episode_id = ?", (episode_id,)
            ).fetchone()[0]
            self.conn.execute(
                "INSERT INTO messages(episode_id, seq, step, role, content, tokens, created_at) VALUES (?,?,?,?,?,?,?)",
                (episode_id, seq, step, role, self.scrub(content), tokens, time.time()),
            )
        return seq

    def add_model_call(self, episode_id: str, step: int, n_prompt_messages: int, response_seq: int | None,
                       prompt_tokens: int, completion_tokens: int, duration_s: float, cost_usd: float = 0.0,
                       *, engine: str | None = None, adapter_version: str | None = None,
                       stop_reason: str | None = None) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO model_calls(episode_id, step, n_prompt_messages, response_seq, prompt_tokens,"
                " completion_tokens, duration_s, cost_usd, created_at, engine, adapter_version, stop_reason)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (episode_id, step, n_prompt_messages, response_seq, prompt_tokens, completion_tokens, duration_s,
                 cost_usd, time.time(), engine, adapter_version, stop_reason),
            )
            self.conn.execute(
                "UPDATE episodes SET prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?,"
                " cost_usd = cost_usd + ?, steps = CASE WHEN steps > ? THEN steps ELSE ? END WHERE id = ?",
                (prompt_tokens, completion_tokens, cost_usd, step, step, episode_id),
            )

    def add_tool_call(self, episode_id: str, step: int, name: str, args: dict, result: str, ok: bool,
                      duration_s: float) -> None:
        self.conn.execute(
            "INSERT INTO tool_calls(episode_id, step, name, args, result, ok, duration_s, created_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (episode_id, step, name, self.scrub(json.dumps(args)), self.scrub(result), int(ok), duration_s,
             time.time()),
        )

    def add_test_run(self, episode_id: str, phase: str, command: str, exit_code: int | None, output_tail: str,
                     duration_s: float, timed_out: bool = False) -> None:
        self.conn.execute(
            "INSERT INTO test_runs(episode_id, phase, command, exit_code, timed_out, output_tail, duration_s,"
            " created_at) VALUES (?,?,?,?,?,?,?,?)",
            (episode_id, phase, self.scrub(command), exit_code, int(timed_out), self.scrub(output_tail),
             duration_s, time.time()),
        )

    def finish_episode(self, episode_id: str, status: EpisodeStatus, *, final_diff: str | None = None,
                       summary: str | None = None, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE episodes SET status = ?, final_diff = ?, summary = ?, error = ?, ended_at = ? WHERE id = ?",
            (status, self.scrub(final_diff) if final_diff is not None else None,
             self.scrub(summary) if summary else summary, self.scrub(error) if error else error,
             time.time(), episode_id),
        )

    def set_outcome(self, episode_id: str, outcome: OutcomeName, reason: str | None = None) -> None:
        if outcome not in OUTCOMES:
            raise StoreError(f"unknown outcome '{outcome}' (one of {', '.join(OUTCOMES)})")
        self.conn.execute(
            "UPDATE episodes SET outcome = ?, outcome_reason = ? WHERE id = ?",
            (outcome, self.scrub(reason) if reason else reason, episode_id),
        )

    def update_meta(self, episode_id: str, **values: Any) -> None:
        with self.transaction():
            row = self.conn.execute("SELECT meta FROM episodes WHERE id = ?", (episode_id,)).fetchone()
            meta = json.loads(row["meta"]) if row else {}
            meta.update(values)
            self.conn.execute("UPDATE episodes SET meta = ? WHERE id = ?", (self.scrub(json.dumps(meta)), episode_id))

    # ---- reading --------------------------------------------------------------------
    def find_episode(self, episode_id: str) -> Episode | None:
        """The episode's own row (no messages or calls), None when it is not in the store."""
        row = self.conn.execute("SELECT * FROM episodes WHERE id = ?", (episode_id,)).fetchone()
        return None if row is None else self._episode(row)

    def running_episode_ids(self, repo_id: str) -> list[str]:
        """Episodes of the repository whose status still says 'running' (live, or died without a word)."""
        return [r["id"] for r in self.conn.execute(
            "SELECT id FROM episodes WHERE repo_id = ? AND status = 'running' ORDER BY id", (repo_id,))]

    def resolve_id(self, prefix: str) -> str:
        rows = self.conn.execute(
            "SELECT id FROM episodes WHERE id LIKE ? ORDER BY started_at DESC LIMIT 2", (prefix + "%",)
        ).fetchall()
        if not prefix or not rows:
            raise UnknownEpisode(f"no episode '{prefix}' (see `learnagent log`)")
        if len(rows) > 1 and rows[0]["id"] != prefix:
            raise UnknownEpisode(f"episode id '{prefix}' is ambiguous; give more characters")
        return rows[0]["id"]

    def short_ids(self, ids: list[str], min_len: int = MIN_ID) -> dict[str, str]:
        """The shortest prefix of each id that no other episode's id starts with (at least `min_len`
        characters), as git abbreviates commit ids; `resolve_id` takes it back (show, apply, forget).
        In sorted order an id shares its longest prefix with a neighbour, so two lookups per id suffice."""
        short = {}
        for eid in ids:
            shared = 0
            for sql in ("SELECT id FROM episodes WHERE id < ? ORDER BY id DESC LIMIT 1",
                        "SELECT id FROM episodes WHERE id > ? ORDER BY id LIMIT 1"):
                row = self.conn.execute(sql, (eid,)).fetchone()
                if row is not None:
                    other = row["id"]
                    n = 0
                    while n < min(len(eid), len(other)) and eid[n].lower() == other[n].lower():  # LIKE ignores case
                        n += 1
                    shared = max(shared, n)
            short[eid] = eid[:max(min_len, shared + 1)]
        return short

    def list_episodes(self, repo_id: str | None = None, limit: int = 50) -> list[Episode]:
        """The newest episodes (of one repository, or all), without their messages and calls; `tests`
        is the last test run's verdict."""
        sql = "SELECT e.*, r.name AS repo_name, r.path AS repo_path FROM episodes e JOIN repos r ON r.id = e.repo_id"
        args: list[Any] = []
        if repo_id:
            sql += " WHERE e.repo_id = ?"
            args.append(repo_id)
        sql += f" ORDER BY {NEWEST_FIRST} LIMIT ?"
        args.append(limit)
        episodes = []
        for row in self.conn.execute(sql, args).fetchall():
            last = self.conn.execute(_TEST_RUN + " WHERE episode_id = ? ORDER BY id DESC LIMIT 1",
                                     (row["id"],)).fetchone()
            episodes.append(self._episode(row, tests=None if last is None else _test_run(last).verdict))
        return episodes

    def get_episode(self, episode_id: str) -> Episode:
        """The episode whole: its row, messages, model and tool calls, test runs."""
        row = self.conn.execute(
            "SELECT e.*, r.name AS repo_name, r.path AS repo_path FROM episodes e JOIN repos r ON r.id = e.repo_id"
            " WHERE e.id = ?", (episode_id,)).fetchone()
        if row is None:
            raise UnknownEpisode(f"no episode '{episode_id}'")
        q = self.conn.execute
        messages = tuple(from_row(Message, r) for r in q(
            "SELECT seq, step, role, content, tokens, created_at FROM messages WHERE episode_id = ? ORDER BY seq",
            (episode_id,)))
        model_calls = tuple(from_row(ModelCall, r) for r in q(
            "SELECT step, n_prompt_messages, response_seq, prompt_tokens, completion_tokens, duration_s, cost_usd,"
            " engine, adapter_version, stop_reason FROM model_calls WHERE episode_id = ? ORDER BY id", (episode_id,)))
        tool_calls = tuple(from_row(ToolCall, r, args=json.loads(r["args"]), ok=bool(r["ok"])) for r in q(
            "SELECT step, name, args, result, ok, duration_s FROM tool_calls WHERE episode_id = ? ORDER BY id",
            (episode_id,)))
        test_runs = tuple(_test_run(r) for r in q(_TEST_RUN + " WHERE episode_id = ? ORDER BY id", (episode_id,)))
        return self._episode(row, tests=test_runs[-1].verdict if test_runs else None, messages=messages,
                             model_calls=model_calls, tool_calls=tool_calls, test_runs=test_runs)

    @staticmethod
    def _episode(row, **extra) -> Episode:
        return from_row(Episode, row, meta=json.loads(row["meta"] or "{}"), **extra)


_TEST_RUN = "SELECT phase, command, exit_code, timed_out, output_tail, duration_s FROM test_runs"


def _test_run(row) -> TestRun:
    return from_row(TestRun, row, timed_out=bool(row["timed_out"]))


def _default_scrubber() -> Callable[[str], str]:
    from learnagent.store.redact import redact_text  # secrets never reach the database

    return redact_text
