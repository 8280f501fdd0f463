"""subscriptions, invoices and test clocks mirrored from Stripe Billing

Revision ID: b1bf6637820b
Revises: d41c7e9a2b10
Create Date: 2026-12-04 08:03:47.234414

- `subscriptions`: every subscription of the account, from webhooks, API answers and reconcile;
  one made through `POST /subscriptions` is committed first (`stripe_id` null until Stripe
  answers) with its creating caller and `Idempotency-Key` (unique together).
- `invoices`: every invoice, with its subscription (`parent.subscription_details`).
- `test_clocks`: each test clock's `frozen_time`, the "now" of its customers' entitlements.
Both mirrors keep `event_created`, the `created` of the last event applied, so that an older
event never overwrites a newer state.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# revision identifiers, used by Alembic.
revision: str = "b1bf6637820b"
down_revision: str | Sequence[str] | None = "d41c7e9a2b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stripe_id", sa.String(length=255), nullable=False),
        sa.Column("customer", sa.String(length=255), nullable=True),
        sa.Column("subscription", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("amount_due", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), nullable=False),
        sa.Column("amount_remaining", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("billing_reason", sa.String(length=64), nullable=True),
        sa.Column("period_start", sa.BigInteger(), nullable=True),
        sa.Column("period_end", sa.BigInteger(), nullable=True),
        sa.Column("hosted_invoice_url", sa.String(length=2048), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_payment_attempt", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("event_created", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("stripe_id", name=op.f("uq_invoices_stripe_id")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_customer_status", ["customer", "status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_invoices_subscription"), ["subscription"], unique=False
        )

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stripe_id", sa.String(length=255), nullable=True),
        sa.Column("customer", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column(
            "cancel_at_period_end", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("current_period_start", sa.BigInteger(), nullable=True),
        sa.Column("current_period_end", sa.BigInteger(), nullable=True),
        sa.Column("trial_end", sa.BigInteger(), nullable=True),
        sa.Column("canceled_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("latest_invoice", sa.String(length=255), nullable=True),
        sa.Column("default_payment_method", sa.String(length=255), nullable=True),
        sa.Column("test_clock", sa.String(length=255), nullable=True),
        sa.Column("items", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("past_due_since", sa.BigInteger(), nullable=True),
        sa.Column("event_created", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("idempotency_owner", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("params_digest", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint(
            "idempotency_owner", "idempotency_key", name=op.f("uq_subscriptions_idempotency_owner")
        ),
        sa.UniqueConstraint("stripe_id", name=op.f("uq_subscriptions_stripe_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriptions_customer_status", ["customer", "status"], unique=False
        )

    op.create_table(
        "test_clocks",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("frozen_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_clocks")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("test_clocks")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_customer_status")

    op.drop_table("subscriptions")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoices_subscription"))
        batch_op.drop_index("ix_invoices_customer_status")

    op.drop_table("invoices")
