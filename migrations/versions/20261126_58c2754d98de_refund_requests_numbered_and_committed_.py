"""refund requests: numbered and committed before the Stripe call

Revision ID: 58c2754d98de
Revises: b5699e483104
Create Date: 2026-11-26 13:39:08.691830

`POST /refunds` commits a `refund_requests` row before it calls Stripe: its `stripe_key` is the
idempotency key sent to Stripe (from the caller's `Idempotency-Key`, else from `number`), so a
refund recorded by a webhook no longer moves the key of the next request, and a retry with the
same `Idempotency-Key` after a lost answer sends Stripe the same key: one refund.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "58c2754d98de"
down_revision: str | Sequence[str] | None = "b5699e483104"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "refund_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("stripe_key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("refund", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refund_requests_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_requests")),
        sa.UniqueConstraint("order_id", "number", name=op.f("uq_refund_requests_order_id")),
        sa.UniqueConstraint("stripe_key", name=op.f("uq_refund_requests_stripe_key")),
    )
    with op.batch_alter_table("refund_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refund_requests_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("refund_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refund_requests_order_id"))
    op.drop_table("refund_requests")
