"""Who recorded each episode, on which machine; which repositories go to a team store (issue 14).

Revision ID: 0008.
- episodes.author: `git config user.email` in the repository when the episode was recorded (for a
  commit brought in by `history import`: the commit's author email); episodes.machine: the host
  name. NULL for episodes recorded before.
- team_repos: the repositories the user opted in to `learnagent push` (`learnagent team join`), with
  the name the team store knows them by (the same on every clone). No row: never pushed.
- pushed: which episode went to which team store (a hash of its address), and the outcome it had
  then, so a second push sends only what is new or changed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.add_column("episodes", sa.Column("author", sa.Text))
    op.add_column("episodes", sa.Column("machine", sa.Text))
    op.create_index("episodes_author", "episodes", ["author"])
    op.create_table(
        "team_repos",
        sa.Column("repo_id", sa.Text, primary_key=True),
        sa.Column("team_name", sa.Text, nullable=False),
        sa.Column("joined_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pushed",
        sa.Column("episode_id", sa.Text, sa.ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("store_hash", sa.Text, nullable=False),  # sha256 of the team store's address, no password
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("pushed_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("episode_id", "store_hash"),
    )
