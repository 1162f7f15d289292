-- Episodes: one `learnagent do` run or one imported commit. See docs/STORE.md.
CREATE TABLE repos (
    id          TEXT PRIMARY KEY,          -- learnagent.core.home.repo_key(path)
    path        TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE episodes (
    id                TEXT PRIMARY KEY,
    repo_id           TEXT NOT NULL REFERENCES repos(id),
    source            TEXT NOT NULL DEFAULT 'do',      -- do | history
    task              TEXT NOT NULL,
    base_commit       TEXT,
    branch            TEXT,
    worktree          TEXT,
    model             TEXT,
    adapter_version   TEXT,
    status            TEXT NOT NULL DEFAULT 'running', -- running | finished | budget_exceeded | failed | interrupted
    outcome           TEXT NOT NULL DEFAULT 'pending', -- pending | accepted | edited | rejected | reverted | kept
    outcome_reason    TEXT,
    final_diff        TEXT,
    summary           TEXT,                            -- the agent's finish message
    error             TEXT,
    steps             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    started_at        REAL NOT NULL,
    ended_at          REAL,
    meta              TEXT NOT NULL DEFAULT '{}'       -- JSON: config snapshot, repo map size, ...
);
CREATE INDEX episodes_repo ON episodes(repo_id, started_at);

-- The conversation, in order. A model call's prompt is messages[0:n_prompt_messages].
CREATE TABLE messages (
    episode_id  TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    role        TEXT NOT NULL,   -- system | user | assistant
    content     TEXT NOT NULL,
    tokens      INTEGER,
    created_at  REAL NOT NULL,
    PRIMARY KEY (episode_id, seq)
);

CREATE TABLE model_calls (
    id                INTEGER PRIMARY KEY,
    episode_id        TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    step              INTEGER NOT NULL,
    n_prompt_messages INTEGER NOT NULL,
    response_seq      INTEGER,              -- messages.seq of the response
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    duration_s        REAL NOT NULL,
    cost_usd          REAL NOT NULL DEFAULT 0,
    created_at        REAL NOT NULL
);
CREATE INDEX model_calls_episode ON model_calls(episode_id, step);

CREATE TABLE tool_calls (
    id          INTEGER PRIMARY KEY,
    episode_id  TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    args        TEXT NOT NULL,       -- JSON
    result      TEXT NOT NULL,
    ok          INTEGER NOT NULL,    -- 0 when the tool reported an error to the model
    duration_s  REAL NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX tool_calls_episode ON tool_calls(episode_id, step);

CREATE TABLE test_runs (
    id           INTEGER PRIMARY KEY,
    episode_id   TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    phase        TEXT NOT NULL,      -- agent (a `test` tool call) | final (after the loop)
    command      TEXT NOT NULL,
    exit_code    INTEGER,
    timed_out    INTEGER NOT NULL DEFAULT 0,
    output_tail  TEXT NOT NULL,
    duration_s   REAL NOT NULL,
    created_at   REAL NOT NULL
);
CREATE INDEX test_runs_episode ON test_runs(episode_id);
