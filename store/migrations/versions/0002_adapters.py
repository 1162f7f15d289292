"""Repo LoRA adapters made by `learnagent sleep`, with their metrics and lineage.

Revision ID: 0002. The folder `adapters_dir(repo)/<version>` holds the weights; the file
`adapters_dir(repo)/PROMOTED` (not this table) says which one `do` loads.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TEXT, FLOAT, INT = sa.Text, sa.Float, sa.Integer


def upgrade() -> None:
    op.create_table(
        "adapters",
        sa.Column("repo_id", TEXT, sa.ForeignKey("repos.id"), nullable=False),
        sa.Column("version", TEXT, nullable=False),  # v0001, ... reserved before training starts
        sa.Column("path", TEXT, nullable=False),
        sa.Column("parent", TEXT),  # the adapter it was initialised from (NULL: from base)
        sa.Column("method", TEXT, nullable=False),  # opsd | sft
        sa.Column("base_model", TEXT, nullable=False),
        sa.Column("created_at", FLOAT, nullable=False),
        sa.Column("status", TEXT, nullable=False, server_default="candidate"),
        sa.Column("metrics", TEXT, nullable=False, server_default="{}"),  # JSON
        sa.Column("reason", TEXT),
        sa.Column("tainted", INT, nullable=False, server_default="0"),  # 1: trained on a forgotten episode
        sa.PrimaryKeyConstraint("repo_id", "version"),
    )
    op.create_table(
        "adapter_episodes",  # the episodes an adapter was trained on (held-out ones are not listed)
        sa.Column("repo_id", TEXT, nullable=False),
        sa.Column("version", TEXT, nullable=False),
        sa.Column("episode_id", TEXT, nullable=False),
        sa.PrimaryKeyConstraint("repo_id", "version", "episode_id"),
        sa.ForeignKeyConstraint(["repo_id", "version"], ["adapters.repo_id", "adapters.version"],
                                ondelete="CASCADE"),
    )
    op.create_index("adapter_episodes_episode", "adapter_episodes", ["episode_id"])
