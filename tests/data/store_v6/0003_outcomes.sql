-- Outcomes: what became of each edit the agent proposed (git hooks, explicit verdicts, history import).
-- The episode's `outcome` column holds the current verdict; these tables hold the evidence for it.

-- One row per piece of evidence. kind:
--   match     a commit contains some of the episode's changed lines (detail: exact/edited/moved unit
--             indices, see store/attribution.py); one row per (episode, commit), so a commit seen
--             twice (post-commit, then post-rewrite or post-merge) is never counted twice
--   verdict   the outcome changed (outcome: the new one; detail: from, reason, by)
--   revert    a commit took the episode's lines out again (detail: fraction, message)
--   survival  how many of the episode's committed lines are still present N commits later
CREATE TABLE outcome_events (
    id          INTEGER PRIMARY KEY,
    episode_id  TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    commit_sha  TEXT,
    outcome     TEXT,
    matched     INTEGER,           -- match: units covered by this commit; survival: lines present
    total       INTEGER,           -- units of the episode / lines checked
    detail      TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL
);
CREATE INDEX outcome_events_episode ON outcome_events(episode_id, kind);
CREATE INDEX outcome_events_commit ON outcome_events(commit_sha);
CREATE UNIQUE INDEX outcome_events_one_match ON outcome_events(episode_id, commit_sha) WHERE kind = 'match';

-- Commits the hooks have already attributed (post-commit, post-merge and post-rewrite may all see one).
CREATE TABLE processed_commits (
    repo_id       TEXT NOT NULL,
    sha           TEXT NOT NULL,
    processed_at  REAL NOT NULL,
    PRIMARY KEY (repo_id, sha)
);

-- `learnagent history import`: one episode per imported commit; re-import skips these.
CREATE TABLE imported_commits (
    repo_id     TEXT NOT NULL,
    sha         TEXT NOT NULL,
    episode_id  TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    PRIMARY KEY (repo_id, sha)
);
