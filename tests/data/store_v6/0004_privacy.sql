-- Privacy: what the user asked learnagent to forget, and repositories where recording is paused.

-- One row per forgotten episode. Only hashes are kept (sha256 of "<repo_id>:<value>"), so the
-- table proves what was forgotten without holding it. `commit_hash`: for an episode imported
-- from history, the hash of its commit, so `history import` refuses to bring it back.
CREATE TABLE forgotten_episodes (
    id_hash       TEXT PRIMARY KEY,
    repo_id       TEXT NOT NULL,
    commit_hash   TEXT,
    forgotten_at  REAL NOT NULL
);
CREATE INDEX forgotten_commit ON forgotten_episodes(repo_id, commit_hash);

-- `learnagent logs off|on`: no row means recording is on (the default).
CREATE TABLE recording (
    repo_id     TEXT PRIMARY KEY,
    enabled     INTEGER NOT NULL,
    changed_at  REAL NOT NULL
);
