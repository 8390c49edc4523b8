"""progress reports and early stopping: the last progress of each individual, and stopped counts

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stopped", sa.Integer(), nullable=False, server_default="0"))
        # Members folded into the algorithm (completions and stopped children that joined the population):
        # the completion ranks run over them.
        batch_op.add_column(sa.Column("ranked", sa.Integer(), nullable=False, server_default="0"))
        # Training seconds of completed and of stopped children: what early stopping saved, without a scan.
        batch_op.add_column(sa.Column("completed_train_seconds", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("stopped_train_seconds", sa.Float(), nullable=False, server_default="0"))
    op.execute("UPDATE experiments SET ranked = completed")
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epochs", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("progress_accuracy", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("progress_loss", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("progress_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("individuals", schema=None) as batch_op:
        batch_op.drop_column("progress_seconds")
        batch_op.drop_column("progress_loss")
        batch_op.drop_column("progress_accuracy")
        batch_op.drop_column("epochs")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_column("stopped_train_seconds")
        batch_op.drop_column("completed_train_seconds")
        batch_op.drop_column("ranked")
        batch_op.drop_column("stopped")
