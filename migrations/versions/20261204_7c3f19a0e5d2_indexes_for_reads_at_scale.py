"""indexes for reads at scale: every documented list and search form served by an index

Revision ID: 7c3f19a0e5d2
Revises: d41c7e9a2b10
Create Date: 2026-12-04 08:50:00.000000

Lists and searches answer newest first (`created DESC, id DESC`) and page by keyset, so each
filter gets a composite index that ends in the sort key: a page is an index range, on page 10,000
as on page 1. They replace the indexes whose prefix they extend.

On Postgres only (SQLite runs the same queries without them):
- `lower(status|currency|customer), created, id`: search compares tokens case-insensitively with
  `lower(col) = 'value'`, which only an index on that expression serves.
- GIN `jsonb_path_ops` over `lower(metadata::text)::jsonb`: search adds a containment test on it
  (`@> '{"key": "value"}'`, lower-cased) in front of its exact `lower(metadata->>'key')`
  comparison, so `metadata['key']:'value'` is an index lookup.
- `amount`: ranges on amount that few rows satisfy.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7c3f19a0e5d2"
down_revision: str | Sequence[str] | None = "d41c7e9a2b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRES_ONLY = {
    "ix_payment_intents_lower_status": ("payment_intents (lower(status), created, id)"),
    "ix_payment_intents_lower_currency": ("payment_intents (lower(currency), created, id)"),
    "ix_payment_intents_lower_customer": ("payment_intents (lower(customer), created, id)"),
    "ix_payment_intents_lower_metadata": (
        "payment_intents USING gin ((lower(metadata::text)::jsonb) jsonb_path_ops)"
    ),
    "ix_payment_intents_amount": "payment_intents (amount)",
}


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_customer_status")
        batch_op.drop_index("ix_orders_customer")
        batch_op.create_index("ix_orders_created_at_id", ["created_at", "id"])
        batch_op.create_index("ix_orders_status_created_at_id", ["status", "created_at", "id"])
        batch_op.create_index("ix_orders_customer_created_at_id", ["customer", "created_at", "id"])
        batch_op.create_index(
            "ix_orders_customer_status_created_at_id", ["customer", "status", "created_at", "id"]
        )
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_intents_status_created")
        batch_op.drop_index("ix_payment_intents_customer")
        batch_op.create_index("ix_payment_intents_created_id", ["created", "id"])
        batch_op.create_index("ix_payment_intents_status_created_id", ["status", "created", "id"])
        batch_op.create_index(
            "ix_payment_intents_customer_created_id", ["customer", "created", "id"]
        )
    if op.get_context().dialect.name == "postgresql":
        for name, target in POSTGRES_ONLY.items():
            op.execute(f"CREATE INDEX {name} ON {target}")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_context().dialect.name == "postgresql":
        for name in POSTGRES_ONLY:
            op.execute(f"DROP INDEX {name}")
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_intents_customer_created_id")
        batch_op.drop_index("ix_payment_intents_status_created_id")
        batch_op.drop_index("ix_payment_intents_created_id")
        batch_op.create_index("ix_payment_intents_customer", ["customer"])
        batch_op.create_index("ix_payment_intents_status_created", ["status", "created"])
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_customer_status_created_at_id")
        batch_op.drop_index("ix_orders_customer_created_at_id")
        batch_op.drop_index("ix_orders_status_created_at_id")
        batch_op.drop_index("ix_orders_created_at_id")
        batch_op.create_index("ix_orders_customer", ["customer"])
        batch_op.create_index("ix_orders_customer_status", ["customer", "status"])
