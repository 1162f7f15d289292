"""Privacy: hashes of forgotten episodes (and their imported commits), the recording switch.

Revision ID: 0004. Only sha256("<repo_id>:<value>") is kept, never the forgotten value.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

TEXT, FLOAT, INT = sa.Text, sa.Float, sa.Integer


def upgrade() -> None:
    op.create_table(
        "forgotten_episodes",
        sa.Column("id_hash", TEXT, primary_key=True),
        sa.Column("repo_id", TEXT, nullable=False),
        sa.Column("commit_hash", TEXT),
        sa.Column("forgotten_at", FLOAT, nullable=False),
    )
    op.create_index("forgotten_commit", "forgotten_episodes", ["repo_id", "commit_hash"])
    op.create_table(
        "recording",  # `learnagent logs off|on`: no row means recording is on
        sa.Column("repo_id", TEXT, primary_key=True),
        sa.Column("enabled", INT, nullable=False),
        sa.Column("changed_at", FLOAT, nullable=False),
    )
