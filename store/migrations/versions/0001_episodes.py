"""Episodes: one `learnagent do` run or one imported commit, its conversation, calls and test runs.

Revision ID: 0001 (user_version 1 of the stores made before Alembic). See docs/STORE.md.
Types: TEXT, FLOAT (SQLite REAL, PostgreSQL double precision: times are Unix seconds with
microseconds), INTEGER; an integer primary key is SQLite's rowid and PostgreSQL's serial.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

TEXT, FLOAT, INT = sa.Text, sa.Float, sa.Integer
ROW_ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")  # SQLite: the rowid; PostgreSQL: bigserial


def _episode_fk():
    return sa.ForeignKey("episodes.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "repos",
        sa.Column("id", TEXT, primary_key=True),  # Repository.key: 12 hex of sha1(main tree path)
        sa.Column("path", TEXT, nullable=False),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("created_at", FLOAT, nullable=False),
    )
    op.create_table(
        "episodes",
        sa.Column("id", TEXT, primary_key=True),
        sa.Column("repo_id", TEXT, sa.ForeignKey("repos.id"), nullable=False),
        sa.Column("source", TEXT, nullable=False, server_default="do"),  # do | history
        sa.Column("task", TEXT, nullable=False),
        sa.Column("base_commit", TEXT),
        sa.Column("branch", TEXT),
        sa.Column("worktree", TEXT),
        sa.Column("model", TEXT),
        sa.Column("adapter_version", TEXT),
        sa.Column("status", TEXT, nullable=False, server_default="running"),
        sa.Column("outcome", TEXT, nullable=False, server_default="pending"),
        sa.Column("outcome_reason", TEXT),
        sa.Column("final_diff", TEXT),
        sa.Column("summary", TEXT),
        sa.Column("error", TEXT),
        sa.Column("steps", INT, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", INT, nullable=False, server_default="0"),
        sa.Column("completion_tokens", INT, nullable=False, server_default="0"),
        sa.Column("cost_usd", FLOAT, nullable=False, server_default="0"),
        sa.Column("started_at", FLOAT, nullable=False),
        sa.Column("ended_at", FLOAT),
        sa.Column("meta", TEXT, nullable=False, server_default="{}"),  # JSON
    )
    op.create_index("episodes_repo", "episodes", ["repo_id", "started_at"])
    op.create_table(
        "messages",  # a model call's prompt is messages[0:n_prompt_messages]
        sa.Column("episode_id", TEXT, _episode_fk(), nullable=False),
        sa.Column("seq", INT, nullable=False),
        sa.Column("step", INT, nullable=False),
        sa.Column("role", TEXT, nullable=False),  # system | user | assistant
        sa.Column("content", TEXT, nullable=False),
        sa.Column("tokens", INT),
        sa.Column("created_at", FLOAT, nullable=False),
        sa.PrimaryKeyConstraint("episode_id", "seq"),
    )
    op.create_table(
        "model_calls",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("episode_id", TEXT, _episode_fk(), nullable=False),
        sa.Column("step", INT, nullable=False),
        sa.Column("n_prompt_messages", INT, nullable=False),
        sa.Column("response_seq", INT),  # messages.seq of the response
        sa.Column("prompt_tokens", INT, nullable=False),
        sa.Column("completion_tokens", INT, nullable=False),
        sa.Column("duration_s", FLOAT, nullable=False),
        sa.Column("cost_usd", FLOAT, nullable=False, server_default="0"),
        sa.Column("created_at", FLOAT, nullable=False),
    )
    op.create_index("model_calls_episode", "model_calls", ["episode_id", "step"])
    op.create_table(
        "tool_calls",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("episode_id", TEXT, _episode_fk(), nullable=False),
        sa.Column("step", INT, nullable=False),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("args", TEXT, nullable=False),  # JSON
        sa.Column("result", TEXT, nullable=False),
        sa.Column("ok", INT, nullable=False),  # 0 when the tool reported an error to the model
        sa.Column("duration_s", FLOAT, nullable=False),
        sa.Column("created_at", FLOAT, nullable=False),
    )
    op.create_index("tool_calls_episode", "tool_calls", ["episode_id", "step"])
    op.create_table(
        "test_runs",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("episode_id", TEXT, _episode_fk(), nullable=False),
        sa.Column("phase", TEXT, nullable=False),  # agent (a `test` tool call) | final (after the loop)
        sa.Column("command", TEXT, nullable=False),
        sa.Column("exit_code", INT),
        sa.Column("timed_out", INT, nullable=False, server_default="0"),
        sa.Column("output_tail", TEXT, nullable=False),
        sa.Column("duration_s", FLOAT, nullable=False),
        sa.Column("created_at", FLOAT, nullable=False),
    )
    op.create_index("test_runs_episode", "test_runs", ["episode_id"])
