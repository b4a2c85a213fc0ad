"""System settings edited at run time, and workspace quotas.

`system_settings` holds the policy settings a super admin changed on /admin/settings (or with
`flask settings set`): one row per key, the value as text, who changed it and when. The
environment still wins over a row (services/settings.py).

`workspaces.quota_daily_messages` (messages per day in the workspace time zone, all campaigns) and
`workspaces.quota_max_recipients` (recipients one campaign may hold) are nullable: no quota. The
index on `daily_sent.day` lets the quota sum today's rows of one workspace without scanning the
whole history.

Revision ID: 0015
Revises: 0008
Create Date: 2026-11-28 11:20:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('system_settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], name=op.f('fk_system_settings_updated_by_users'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_system_settings'))
    )
    # Plain ALTER TABLE on both backends (a batch copy on SQLite would rebuild workspaces).
    op.add_column('workspaces', sa.Column('quota_daily_messages', sa.BigInteger(), nullable=True))
    op.add_column('workspaces', sa.Column('quota_max_recipients', sa.BigInteger(), nullable=True))
    op.create_index('ix_daily_sent_day', 'daily_sent', ['day'], unique=False)


def downgrade():
    op.drop_index('ix_daily_sent_day', table_name='daily_sent')
    # Plain ALTER TABLE DROP COLUMN (SQLite ≥ 3.35): a batch copy would drop and re-create
    # `workspaces`, and dropping it with foreign keys on would cascade into every tenant table.
    op.drop_column('workspaces', 'quota_max_recipients')
    op.drop_column('workspaces', 'quota_daily_messages')
    op.drop_table('system_settings')
