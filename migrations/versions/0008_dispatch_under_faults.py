"""Dispatch under faults: campaigns say why the system failed or paused them; recipients count
transient refusals and when to resubmit; each campaign's back-off/breaker state; delivery reports
kept until their message is recorded as sent (none is lost to a replayed batch).

The two recipient columns are nullable without a default, so adding them rewrites nothing on
PostgreSQL (and the ingest's COPY column list is unchanged).

Revision ID: 0008
Revises: 0010
Create Date: 2026-11-28 08:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTER TABLE on both backends: a batch "move and copy" on SQLite would drop the
    # campaigns delete trigger of 0007 with the old table.
    op.add_column('campaigns', sa.Column('failure_reason', sa.String(length=300), nullable=True))
    op.add_column('campaigns', sa.Column('pause_reason', sa.String(length=300), nullable=True))
    op.add_column('recipients', sa.Column('attempts', sa.SmallInteger(), nullable=True))
    op.add_column('recipients', sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('dispatch_states',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('backoff_step', sa.Integer(), nullable=False),
    sa.Column('backoff_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('trouble_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('trouble_code', sa.String(length=40), nullable=True),
    sa.Column('trouble', sa.String(length=300), nullable=True),
    sa.Column('refusals', sa.Integer(), nullable=False),
    sa.Column('rejection_streak', sa.Integer(), nullable=False),
    sa.Column('rejection_code', sa.String(length=20), nullable=True),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_dispatch_states_campaign_id_campaigns'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_dispatch_states'))
    )
    op.create_table('pending_reports',
    sa.Column('recipient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('core_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('error_code', sa.String(length=10), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('recipient_id', name=op.f('pk_pending_reports'))
    )


def downgrade():
    # Reports still waiting for their message go with their table (the old poller would have
    # dropped them anyway); refused batches read as submitted (nothing of theirs is claimed).
    op.drop_table('pending_reports')
    op.drop_table('dispatch_states')
    op.execute("UPDATE dispatch_batches SET state = 'submitted' WHERE state = 'refused'")
    for table, column in (('recipients', 'retry_at'), ('recipients', 'attempts'),
                          ('campaigns', 'pause_reason'), ('campaigns', 'failure_reason')):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")  # SQLite >= 3.35 and PostgreSQL
