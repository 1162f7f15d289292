"""The order episodes were recorded in: `episodes.seq` (issue 14, daily use).

Revision ID: 0009.
`log` lists episodes newest first by their start time; episodes that start in the same second (the
commits of one `history import` made in the same second, runs copied to a team store) were left in
the order of their ids' random or hashed tails. `seq` is one more than the highest seq when the
row is written (store/episodes.py `NEXT_EPISODE_SEQ`, under the store's write lock), so it follows
the order they were written in, and ties on the start time go by it.

Existing rows get their order: on SQLite the rowid (the order they were written in); on PostgreSQL,
which keeps no such order, their start time, then id.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column("episodes", sa.Column("seq", sa.BigInteger))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE episodes SET seq = rowid")
    else:
        op.execute("UPDATE episodes SET seq = o.n FROM (SELECT id, row_number() OVER (ORDER BY started_at, id) AS n"
                   " FROM episodes) o WHERE episodes.id = o.id")
    op.create_index("episodes_seq", "episodes", ["seq"])
