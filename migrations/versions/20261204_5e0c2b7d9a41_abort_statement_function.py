"""a statement can roll itself back: abort_statement(reason)

Revision ID: 5e0c2b7d9a41
Revises: 7c3e5a91f2d4
Create Date: 2026-12-04 12:00:00.000000

- `abort_statement(reason text)` (Postgres): raises SQLSTATE `PA001` with the reason. The
  webhook fast path (`app.webhooks.fast_path`) stores an event, locks its order and writes the
  change in one autocommit statement, planned from the order as read just before; when the
  order is not as read (or another transaction holds it), the statement calls this to roll
  itself back, the stored event with it, and the general path takes the event.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5e0c2b7d9a41"
down_revision: str | Sequence[str] | None = "7c3e5a91f2d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ABORT_STATEMENT = """
CREATE FUNCTION abort_statement(reason text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'PA001', MESSAGE = reason;
END
$$
"""


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_context().dialect.name == "postgresql":
        op.execute(ABORT_STATEMENT)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION abort_statement(text)")
