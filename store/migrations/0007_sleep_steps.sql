-- `learnagent sleep` as a state machine (issue 13): one row per transition of a candidate adapter,
-- reserved -> planned -> trained -> gated -> sealed -> decided. The newest row of a version is its
-- state; an interrupted sleep resumes (or settles) a candidate from it, not from which files exist.
-- `data` (JSON) holds what the step decided: the split (planned), the trainer's numbers (trained),
-- the gate's metrics (gated), the verdict (decided). Learning code reads it through store/sleep_steps.py.
CREATE TABLE sleep_steps (
    repo_id     TEXT NOT NULL,
    version     TEXT NOT NULL,
    seq         INTEGER NOT NULL,              -- 0, 1, ... per version
    state       TEXT NOT NULL,                 -- reserved | planned | trained | gated | sealed | decided
    at          REAL NOT NULL,
    data        TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (repo_id, version, seq),
    FOREIGN KEY (repo_id, version) REFERENCES adapters(repo_id, version) ON DELETE CASCADE
);
