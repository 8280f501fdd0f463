"""customers and checkout sessions keep their creating Idempotency-Key; claims name their holder

Revision ID: d41c7e9a2b10
Revises: 58c2754d98de
Create Date: 2026-12-04 05:40:00.000000

- `customers.idempotency_owner`/`idempotency_key` (unique together): `POST /customers` commits
  its row before it calls Stripe; a retry with the same `Idempotency-Key` finds that row and
  sends Stripe the same key, so a lost answer never makes a second Stripe customer. The same
  for `checkout_sessions` made without an order (subscription and setup modes).
- `idempotency_keys.holder`: the process that claimed an in-flight key (on Postgres, the key of
  a session advisory lock that process holds while it lives): a claim whose holder died is taken
  over at once instead of after the lease.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "d41c7e9a2b10"
down_revision: str | Sequence[str] | None = "58c2754d98de"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table(
        "customers", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(sa.Column("idempotency_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_customers_idempotency_owner"), ["idempotency_owner", "idempotency_key"]
        )
    with op.batch_alter_table(
        "checkout_sessions", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(sa.Column("idempotency_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_checkout_sessions_idempotency_owner"),
            ["idempotency_owner", "idempotency_key"],
        )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("holder")
    with op.batch_alter_table(
        "checkout_sessions", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_checkout_sessions_idempotency_owner"), type_="unique"
        )
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("idempotency_owner")
    with op.batch_alter_table(
        "customers", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_customers_idempotency_owner"), type_="unique")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("idempotency_owner")
