"""customers and checkout sessions: the row is written before the Stripe call

Revision ID: 4e4236a29c30
Revises: c78b25c0d9cb
Create Date: 2026-11-26 12:48:55.091257

`stripe_id` of customers and checkout sessions becomes nullable (the row exists, inside its
transaction, before Stripe answers); SQLite stops reusing the ids of rolled-back rows (they key
Stripe calls); customers get `version` (changes made through the service) and `data` (the
Stripe object as last seen).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "4e4236a29c30"
down_revision: str | Sequence[str] | None = "c78b25c0d9cb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
NO_ID_REUSE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("customers", schema=None, table_kwargs=NO_ID_REUSE) as batch_op:
        batch_op.alter_column("stripe_id", existing_type=sa.String(length=255), nullable=True)
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("data", JSON, server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table(
        "checkout_sessions", schema=None, table_kwargs=NO_ID_REUSE
    ) as batch_op:
        batch_op.alter_column("stripe_id", existing_type=sa.String(length=255), nullable=True)


def downgrade() -> None:
    """Downgrade schema. Rows still waiting for Stripe's answer (a lost one) have no place in the
    older schema: they are dropped."""
    op.execute("DELETE FROM customers WHERE stripe_id IS NULL")
    op.execute("DELETE FROM checkout_sessions WHERE stripe_id IS NULL")
    with op.batch_alter_table("checkout_sessions", schema=None) as batch_op:
        batch_op.alter_column("stripe_id", existing_type=sa.String(length=255), nullable=False)
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("data")
        batch_op.drop_column("version")
        batch_op.alter_column("stripe_id", existing_type=sa.String(length=255), nullable=False)
