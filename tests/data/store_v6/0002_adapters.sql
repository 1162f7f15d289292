-- Repo LoRA adapters made by `learnagent sleep`, with their metrics and lineage.
-- The folder `adapters_dir(repo)/<version>` holds the weights; the file `adapters_dir(repo)/PROMOTED`
-- (not this table) says which one `do` loads, so a crash between the two never leaves no adapter.
CREATE TABLE adapters (
    repo_id     TEXT NOT NULL REFERENCES repos(id),
    version     TEXT NOT NULL,                 -- v0001, v0002, ... reserved before training starts
    path        TEXT NOT NULL,
    parent      TEXT,                          -- the adapter it was initialised from (NULL: from base)
    method      TEXT NOT NULL,                 -- opsd | sft
    base_model  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    status      TEXT NOT NULL DEFAULT 'candidate', -- candidate | promoted | rejected | retired
    metrics     TEXT NOT NULL DEFAULT '{}',    -- JSON: gap, gap_prev, drift, steps, tokens, ...
    reason      TEXT,                          -- why it was promoted / rejected / retired
    tainted     INTEGER NOT NULL DEFAULT 0,    -- 1: trained on an episode that was later forgotten
    PRIMARY KEY (repo_id, version)
);

-- Lineage: the episodes an adapter was trained on (held-out episodes are not listed).
CREATE TABLE adapter_episodes (
    repo_id     TEXT NOT NULL,
    version     TEXT NOT NULL,
    episode_id  TEXT NOT NULL,
    PRIMARY KEY (repo_id, version, episode_id),
    FOREIGN KEY (repo_id, version) REFERENCES adapters(repo_id, version) ON DELETE CASCADE
);
CREATE INDEX adapter_episodes_episode ON adapter_episodes(episode_id);
