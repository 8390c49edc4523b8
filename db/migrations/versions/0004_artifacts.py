"""artifacts: where each individual's trained weights are kept, their sha256, size and retention state

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("artifact_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("artifact_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("artifact_state", sa.String(length=16), nullable=True))
    # Retention reads the kept artifacts after every report with weights; the partial index holds only them.
    op.create_index("ix_individuals_artifacts", "individuals", ["experiment_id", "proposal_seq"], unique=False,
                    sqlite_where=sa.text("artifact_state = 'kept'"), postgresql_where=sa.text("artifact_state = 'kept'"))


def downgrade() -> None:
    op.drop_index("ix_individuals_artifacts", table_name="individuals")
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.drop_column("artifact_state")
        batch_op.drop_column("artifact_bytes")
        batch_op.drop_column("artifact_sha256")
        batch_op.drop_column("artifact_uri")
