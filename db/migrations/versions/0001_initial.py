"""initial schema: experiments, individuals, events, workers

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27 03:32:29.256498
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('experiments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('config_json', sa.Text(), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('proposals', sa.Integer(), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('event_seq', sa.BigInteger(), nullable=False),
    sa.Column('best_individual_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('best_fitness', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_experiments_state'), ['state'], unique=False)

    op.create_table('workers',
    sa.Column('worker_id', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('evaluator', sa.String(length=64), nullable=False),
    sa.Column('first_seen', sa.Float(), nullable=False),
    sa.Column('last_seen', sa.Float(), nullable=False),
    sa.Column('experiment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('current_individual_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('evaluations', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('worker_id')
    )
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.create_index('ix_workers_experiment', ['experiment_id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('experiment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('individual_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('proposal_seq', sa.Integer(), nullable=True),
    sa.Column('data_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('experiment_id', 'seq', name='uq_events_experiment_seq')
    )
    op.create_table('individuals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('experiment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('proposal_seq', sa.Integer(), nullable=False),
    sa.Column('genome_json', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=32), nullable=False),
    sa.Column('parent_seq', sa.Integer(), nullable=True),
    sa.Column('mutation', sa.String(length=200), nullable=False),
    sa.Column('training_seed', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_token', sa.String(length=64), nullable=True),
    sa.Column('lease_deadline', sa.Float(), nullable=True),
    sa.Column('fitness', sa.Float(), nullable=True),
    sa.Column('accuracy', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('params', sa.BigInteger(), nullable=True),
    sa.Column('mult_adds', sa.BigInteger(), nullable=True),
    sa.Column('train_seconds', sa.Float(), nullable=True),
    sa.Column('compile_seconds', sa.Float(), nullable=True),
    sa.Column('fits_on_chip', sa.Boolean(), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('completion_rank', sa.Integer(), nullable=True),
    sa.Column('in_population', sa.Boolean(), nullable=False),
    sa.Column('improved', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('leased_at', sa.Float(), nullable=True),
    sa.Column('completed_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('experiment_id', 'proposal_seq', name='uq_individuals_experiment_seq')
    )
    with op.batch_alter_table('individuals', schema=None) as batch_op:
        batch_op.create_index('ix_individuals_fitness', ['experiment_id', 'fitness'], unique=False, sqlite_where=sa.text('fitness IS NOT NULL'), postgresql_where=sa.text('fitness IS NOT NULL'))
        batch_op.create_index('ix_individuals_improved', ['experiment_id', 'completion_rank'], unique=False, sqlite_where=sa.text('improved = 1'), postgresql_where=sa.text('improved'))
        batch_op.create_index('ix_individuals_leased', ['experiment_id', 'lease_deadline'], unique=False, sqlite_where=sa.text("state = 'leased'"), postgresql_where=sa.text("state = 'leased'"))
        batch_op.create_index('ix_individuals_population', ['experiment_id', 'completion_rank'], unique=False, sqlite_where=sa.text('in_population = 1'), postgresql_where=sa.text('in_population'))
        batch_op.create_index('ix_individuals_queued', ['experiment_id', 'proposal_seq'], unique=False, sqlite_where=sa.text("state = 'queued'"), postgresql_where=sa.text("state = 'queued'"))
        batch_op.create_index('ix_individuals_rank', ['experiment_id', 'completion_rank'], unique=True, sqlite_where=sa.text('completion_rank IS NOT NULL'), postgresql_where=sa.text('completion_rank IS NOT NULL'))



def downgrade() -> None:
    with op.batch_alter_table('individuals', schema=None) as batch_op:
        batch_op.drop_index('ix_individuals_rank', sqlite_where=sa.text('completion_rank IS NOT NULL'), postgresql_where=sa.text('completion_rank IS NOT NULL'))
        batch_op.drop_index('ix_individuals_queued', sqlite_where=sa.text("state = 'queued'"), postgresql_where=sa.text("state = 'queued'"))
        batch_op.drop_index('ix_individuals_population', sqlite_where=sa.text('in_population = 1'), postgresql_where=sa.text('in_population'))
        batch_op.drop_index('ix_individuals_leased', sqlite_where=sa.text("state = 'leased'"), postgresql_where=sa.text("state = 'leased'"))
        batch_op.drop_index('ix_individuals_improved', sqlite_where=sa.text('improved = 1'), postgresql_where=sa.text('improved'))
        batch_op.drop_index('ix_individuals_fitness', sqlite_where=sa.text('fitness IS NOT NULL'), postgresql_where=sa.text('fitness IS NOT NULL'))

    op.drop_table('individuals')
    op.drop_table('events')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_index('ix_workers_experiment')

    op.drop_table('workers')
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_experiments_state'))

    op.drop_table('experiments')
