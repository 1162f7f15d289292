"""A team store (issue 14): opting repositories in, `learnagent push`, and forgetting there too.

What leaves the laptop, and only on `push`: the `do` episodes of the repositories the user opted in
(`learnagent team join`), with recording on, as the local store holds them (already redacted) and
redacted again on the way (the redactor may know a secret now that it missed at the time), minus
- episodes the user forgot (they are gone from the local store; forgetting later deletes them on the
  team store too, see `forget_on_team`),
- an episode whose diff touches a file the repository's `.learnagentignore` (or the built-in list of
  credential files) covers today: withheld whole,
- a tool call that read or listed such a file: its result is replaced by a marker,
- the episode folder's path and branch (the laptop's own).
History imports stay home (every clone has the commits). A push is idempotent: each store remembers
what it sent where (`pushed`), so a second push sends only new episodes and changed outcomes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from learnagent.core.errors import UsageError
from learnagent.core.repository import Repository
from learnagent.store import team_rows

WITHHELD = "[withheld by learnagent push: the file is covered by .learnagentignore]"


@dataclass
class PushResult:
    sent: list[str] = field(default_factory=list)  # episode ids new on the team store
    updated: list[str] = field(default_factory=list)  # outcome changed since the last push
    withheld: list[str] = field(default_factory=list)  # touched an ignored file
    clashed: list[str] = field(default_factory=list)  # another machine's episode holds the id there: not sent
    paused: list[str] = field(default_factory=list)  # team names of repositories with recording off
    repos: list[str] = field(default_factory=list)  # team names pushed


def team_url(explicit: str | None) -> str:
    """The team store to push to: `--to`, else [team] url of the user's config."""
    from learnagent.core.config import user_settings
    from learnagent.store.db import parse_target

    section, where = user_settings("team")
    url = (explicit or section.url or "").strip()
    if not url:
        raise UsageError(f"no team store: give --to postgresql://USER:PASSWORD@HOST/DB or set url in {where}")
    parse_target(url, "--to" if explicit else f"{where} url")  # refuses what is not a store address
    return url


def store_hash(url: str) -> str:
    """What the local store keeps of a team store's address: a hash of it without the password."""
    from learnagent.store.pg import safe_url

    return hashlib.sha256(safe_url(url).encode()).hexdigest()[:32]


def default_team_name(root: Path) -> str | None:
    """host/owner/name of the repository's `origin` remote (the same on every clone), None without one."""
    from learnagent.store.gitutil import git

    remote = git(root, "config", "--get", "remote.origin.url", check=False).strip()
    if not remote:
        return None
    name = re.sub(r"^[a-z+]+://", "", remote)  # https://, ssh://
    name = re.sub(r"^[^@/]+@", "", name)  # user@ (and user:password@)
    name = name.replace(":", "/", 1) if re.match(r"^[^/]+:[^/0-9]", name) else name  # git@host:owner/repo
    return name.removesuffix(".git").strip("/") or None


def join(store, repo: Repository, name: str | None) -> str:
    """Opt the repository in to push, under `name` (default: its origin remote)."""
    team_name = (name or default_team_name(repo.work_tree) or "").strip()
    if not team_name:
        raise UsageError("this repository has no `origin` remote: name it for the team with --name OWNER/REPO")
    team_rows.join(store, store.ensure_repo(repo), team_name)
    return team_name


def push(local, team, url: str) -> PushResult:
    """Send what is new since the last push to `team` (see the module docstring)."""
    result = PushResult()
    target = store_hash(url)
    sent_before = team_rows.pushed(local, target)
    for repo_id, team_name in team_rows.joined_repos(local).items():
        if not local.recording_enabled(repo_id):
            result.paused.append(team_name)
            continue
        result.repos.append(team_name)
        rules = _ignore_rules(local, repo_id)
        team_rows.ensure_team_repo(team, team_name)
        for eid in team_rows.pushable_episode_ids(local, repo_id):
            episode = local.find_episode(eid)
            if eid in sent_before:
                if sent_before[eid] != episode.outcome:
                    team_rows.update_outcome(team, eid, episode.outcome, episode.outcome_reason)
                    team_rows.mark_pushed(local, target, eid, episode.outcome)
                    result.updated.append(eid)
                continue
            rows = team_rows.episode_rows(local, eid)
            if rules is not None and any(rules.is_ignored(p) for p in touched_paths(episode)):
                result.withheld.append(eid)
                continue
            _prepare(rows, team_name, team.scrub, rules)
            with team.transaction():
                inserted = team_rows.insert_episode(team, rows)
            if inserted == "clash":  # not marked pushed: every push names it again
                result.clashed.append(eid)
                continue
            team_rows.mark_pushed(local, target, eid, episode.outcome)
            (result.sent if inserted == "new" else result.updated).append(eid)
    return result


def forget_on_team(team, episode_ids: list[str], author: str | None) -> list[str]:
    """Forget, on the team store, those of `episode_ids` that are the user's own (author = their git
    user.email): their hashes recorded, the team's adapters trained on them marked tainted (the next
    sleep does not continue from them), the rows deleted. Returns the ids forgotten there.

    Not store/privacy.forget: that one also moves the PROMOTED pointer in this machine's adapter
    folders, which for a team repository live on the GPU box, not here."""
    from learnagent.learning.registry import tainted_by

    if not author or not episode_ids:
        return []
    own = team.episodes_by_id(team_rows.own_episode_ids(team, episode_ids, author))
    if not own:
        return []
    ids = [ep.id for ep in own]
    commits = team.imported_commits_of(ids)
    with team.transaction():
        for ep in own:
            team.record_forgotten(ep.repo_id, ep.id, commits.get(ep.id))
        for repo_id in {ep.repo_id for ep in own}:
            team.mark_adapters_tainted(repo_id, tainted_by(team, repo_id, ids))  # their children too
        team.delete_episodes(ids)
    team.erase_freed_pages()
    return ids


def touched_paths(episode) -> set[str]:
    """The files an episode's change touches: its stored diff's, and, where the store kept only part
    of the diff (agent/run.py `stored_diff`), every file the whole change touched."""
    cut = episode.meta.get("final_diff_truncated") or {}
    return diff_paths(episode.final_diff or "") | set(cut.get("files") or ())


def diff_paths(diff: str) -> set[str]:
    """The files a unified git diff touches (both sides of a rename)."""
    paths = set()
    for line in diff.splitlines():
        if line.startswith(("--- a/", "+++ b/")):
            paths.add(line[6:].strip())
        elif line.startswith("diff --git "):
            m = re.match(r"diff --git a/(.+?) b/(.+)$", line)
            if m:
                paths.update(m.groups())
    return paths


def _ignore_rules(local, repo_id: str):
    from learnagent.core.ignore import IgnoreRules

    path = team_rows.repo_path(local, repo_id)
    root = Path(path) if path else None
    # the repository's own rules when its checkout is here (the stored path is its main tree: its own
    # .learnagentignore is all there is to read); else the built-in credential list alone
    return IgnoreRules.in_folder(root) if root is not None and root.is_dir() else IgnoreRules(root=Path("/"))


def _prepare(rows: dict[str, list[dict]], team_name: str, scrub, rules) -> None:
    """The rows as they may leave the laptop: the team's repository id, local-only columns empty,
    ignored files' tool output withheld, every text scrubbed again."""
    episode = rows["episodes"][0]
    episode["repo_id"] = team_name
    for column in team_rows.LOCAL_ONLY["episodes"]:
        episode[column] = None
    for call in rows.get("tool_calls", []):
        args = json.loads(call["args"] or "{}")
        path = args.get("path") if isinstance(args, dict) else None
        if isinstance(path, str) and path and rules is not None and rules.is_ignored(path.lstrip("/")):
            call["result"] = WITHHELD
    for table, columns in team_rows.TEXT_COLUMNS.items():
        for row in rows.get(table, []):
            for column in columns:
                if isinstance(row.get(column), str):
                    row[column] = scrub(row[column])


def team_adapter(repo: Repository):
    """The team's served adapter for `do` in `repo` (`agent.models.TeamAdapter`), or None when the
    repository is not joined to a team or your config sets no `[team] serve`.

    The version is the team store's promoted row for the repository's team name (the registry
    writes it with the PROMOTED pointer on the GPU box, which a laptop cannot read): the store is
    the team's one record of what is promoted, the laptop already holds its address (`[team] url`,
    for push), and it works whatever engine serves (vLLM lists adapters, not which one is promoted).
    No promoted adapter, or a team store that cannot be read: the base, with the reason as its note."""
    from learnagent.agent.models import TeamAdapter
    from learnagent.core.config import user_settings
    from learnagent.core.errors import LearnagentError
    from learnagent.runtime.serving import server_url
    from learnagent.store.db import parse_target
    from learnagent.store.episodes import Store

    section, where = user_settings("team")
    if not section.serve.strip():
        return None
    server = server_url(section.serve, f"{where} serve")
    with Store() as local:
        team_name = team_rows.joined_repos(local).get(repo.key)
    if team_name is None:
        return None
    if not section.url.strip():
        raise UsageError(f"{where} serve needs url too: the team store says which adapter of {team_name} is promoted")
    target = parse_target(section.url, f"{where} url")
    if isinstance(target, Path) and not target.is_file():
        raise UsageError(f"{where} url: no such store file {target}")
    try:
        with Store(target) as team:
            promoted = team.adapters(team_name, status="promoted")
    except LearnagentError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return TeamAdapter(server, team_name, None, f"the team store cannot be read ({first})")
    if not promoted:
        return TeamAdapter(server, team_name, None, "the team has no promoted adapter for it yet")
    if promoted[0].tainted:  # a developer forgot episodes it learnt from; the GPU box's next sleep moves off it
        return TeamAdapter(server, team_name, None, f"the team's {promoted[0].version} learnt from forgotten "
                                                    "episodes: not used until the team's next sleep replaces it")
    return TeamAdapter(server, team_name, promoted[0].version)
