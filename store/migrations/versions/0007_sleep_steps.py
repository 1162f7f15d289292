"""`learnagent sleep` as a state machine (issue 13, the sleep branch's migration 0007).

Revision ID: 0007. One row per transition of a candidate adapter, reserved -> planned -> trained ->
gated -> sealed -> decided; the newest row of a version is its state. `data` (JSON) holds what the
step decided. Read and written through store/sleep_steps.py.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "sleep_steps",
        sa.Column("repo_id", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),  # 0, 1, ... per version
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("repo_id", "version", "seq"),
        sa.ForeignKeyConstraint(["repo_id", "version"], ["adapters.repo_id", "adapters.version"],
                                ondelete="CASCADE"),
    )
