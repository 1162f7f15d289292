"""Which engine and adapter answered each model call, and why the reply ended (issue 12).

Revision ID: 0006. A `litellm` call through `learnagent serve` may switch adapters between two
steps of one episode, so the episode's own adapter_version is not enough. NULL for older calls.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("model_calls", sa.Column("engine", sa.Text))
    op.add_column("model_calls", sa.Column("adapter_version", sa.Text))
    op.add_column("model_calls", sa.Column("stop_reason", sa.Text))  # reply_complete, eos, max_tokens, ...
