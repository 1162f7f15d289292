"""Runs that changed nothing get their own outcome, `unchanged`, which no rate counts as decided.

Revision ID: 0005. They were recorded as rejected ("no changes") before.
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute("UPDATE episodes SET outcome = 'unchanged', outcome_reason = 'the agent changed nothing'"
               " WHERE source = 'do' AND outcome = 'rejected' AND outcome_reason = 'no changes'"
               " AND (final_diff IS NULL OR final_diff = '')")
