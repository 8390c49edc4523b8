"""weight inheritance: how many parameters each individual took from its parent, and its accuracy before training

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inherited_params", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("initial_accuracy", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.drop_column("initial_accuracy")
        batch_op.drop_column("inherited_params")
