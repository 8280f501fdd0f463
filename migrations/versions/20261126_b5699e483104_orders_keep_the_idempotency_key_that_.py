"""orders keep the caller's Idempotency-Key that created them

Revision ID: b5699e483104
Revises: 4e4236a29c30
Create Date: 2026-11-26 13:04:37.145301

`POST /payment-intents` commits its order before it calls Stripe; a retry of the request with
the same `Idempotency-Key` (from the same caller) finds that order again, unique on
(`idempotency_owner`, `idempotency_key`), and sends Stripe the same idempotency key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b5699e483104"
down_revision: str | Sequence[str] | None = "4e4236a29c30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_orders_idempotency_owner"), ["idempotency_owner", "idempotency_key"]
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_orders_idempotency_owner"), type_="unique")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("idempotency_owner")
