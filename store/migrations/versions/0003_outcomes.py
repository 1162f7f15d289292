"""Outcomes: the evidence of what became of each proposed edit (git hooks, verdicts, history import).

Revision ID: 0003. outcome_events.kind: match | rewritten | verdict | revert | survival (see
store/records.py OutcomeKind); one 'match' per (episode, commit).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

TEXT, FLOAT, INT = sa.Text, sa.Float, sa.Integer
ROW_ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "outcome_events",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("episode_id", TEXT, sa.ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", TEXT, nullable=False),
        sa.Column("commit_sha", TEXT),
        sa.Column("outcome", TEXT),
        sa.Column("matched", INT),  # match: units covered by this commit; survival: lines present
        sa.Column("total", INT),  # units of the episode / lines checked
        sa.Column("detail", TEXT, nullable=False, server_default="{}"),
        sa.Column("created_at", FLOAT, nullable=False),
    )
    op.create_index("outcome_events_episode", "outcome_events", ["episode_id", "kind"])
    op.create_index("outcome_events_commit", "outcome_events", ["commit_sha"])
    only_matches = sa.text("kind = 'match'")
    op.create_index("outcome_events_one_match", "outcome_events", ["episode_id", "commit_sha"], unique=True,
                    sqlite_where=only_matches, postgresql_where=only_matches)
    op.create_table(
        "processed_commits",  # commits the hooks have already attributed
        sa.Column("repo_id", TEXT, nullable=False),
        sa.Column("sha", TEXT, nullable=False),
        sa.Column("processed_at", FLOAT, nullable=False),
        sa.PrimaryKeyConstraint("repo_id", "sha"),
    )
    op.create_table(
        "imported_commits",  # `history import`: one episode per imported commit
        sa.Column("repo_id", TEXT, nullable=False),
        sa.Column("sha", TEXT, nullable=False),
        sa.Column("episode_id", TEXT, sa.ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("repo_id", "sha"),
    )
