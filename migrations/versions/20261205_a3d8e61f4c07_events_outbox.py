"""the outbox: `events`, the service's own events, written with every change they report

Revision ID: a3d8e61f4c07
Revises: 9b4d0e6c1f27
Create Date: 2026-12-05 09:00:00.000000

- `events`: one row per order transition (written by the statement that writes the transition
  and its history entry), subscription status change and invoice outcome (written by the billing
  mirror in the transaction of its change): `type`, `created`, the object after the change,
  `cause` (the Stripe event id or the API call, as `order_history.source`), and `published_at`,
  null until the relay hands the event on.
- Indexes: `(created, id)`, `(type, created, id)` and `(object_id, created, id)` for
  `GET /events` (newest first, keyset pages); `(created, id) WHERE published_at IS NULL` for the
  relay's scan of what is still to deliver (it stays small however many rows are delivered).

Nothing is backfilled: history entries written before this revision have no event.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "a3d8e61f4c07"
down_revision: str | Sequence[str] | None = "9b4d0e6c1f27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column(
            "object",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("cause", sa.String(length=255), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_created_id", ["created", "id"])
        batch_op.create_index("ix_events_type_created_id", ["type", "created", "id"])
        batch_op.create_index("ix_events_object_id_created_id", ["object_id", "created", "id"])
        batch_op.create_index(
            "ix_events_unpublished",
            ["created", "id"],
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("events")
