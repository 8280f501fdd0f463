"""reconcile keeps a cursor in Stripe's events

Revision ID: 7c3e5a91f2d4
Revises: 7c3f19a0e5d2
Create Date: 2026-12-04 09:00:00.000000

- `reconcile_cursors`: where `python -m app reconcile` has got to in Stripe's lists: the newest
  event it fully processed (its id and `created`), so a run reads only the events after it
  rather than retrieving every unsettled order's payment intent; and the end of the last window
  of payment intents it checked for orphans.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7c3e5a91f2d4"
down_revision: str | Sequence[str] | None = "7c3f19a0e5d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "reconcile_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("stripe_id", sa.String(length=255), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reconcile_cursors")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("reconcile_cursors")
