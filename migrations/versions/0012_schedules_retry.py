"""Schedules that hold and retries of the failed (issue 17): campaigns count the recipients whose
Spread day passed unsent (`expired_count`, recipients then have state 'expired'), and a draft made
by "Send again to failed numbers" names its original (`retry_of_id`, indexed, no foreign key: the
original may be deleted) and which failures it retries (`retry_which`). `start_requested_at`: Start
was pressed before an OnTime's `start_at` — the tick starts it on time (auto_start, bound by the
approval fingerprint, is left as approved).

Plain ALTER TABLE on both backends (a batch copy on SQLite would drop the campaigns delete
trigger of 0007). The counter gets a server default so existing rows read 0.

Revision ID: 0012
Revises: 0008
Create Date: 2026-11-28 11:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('campaigns', sa.Column('expired_count', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('campaigns', sa.Column('retry_of_id', sa.Integer(), nullable=True))
    op.add_column('campaigns', sa.Column('retry_which', sa.String(length=10), nullable=True))
    op.add_column('campaigns', sa.Column('start_requested_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_campaigns_retry_of_id'), 'campaigns', ['retry_of_id'], unique=False)


def downgrade():
    # Expired recipients read as queued again (the old code knows no 'expired' state); their
    # campaigns are terminal, so nothing sends them.
    op.execute("UPDATE recipients SET state = 'queued' WHERE state = 'expired'")
    op.drop_index(op.f('ix_campaigns_retry_of_id'), table_name='campaigns')
    for column in ('start_requested_at', 'retry_which', 'retry_of_id', 'expired_count'):
        op.execute(f"ALTER TABLE campaigns DROP COLUMN {column}")  # SQLite >= 3.35 and PostgreSQL
