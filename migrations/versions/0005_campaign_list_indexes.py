"""Campaign list at 100k campaigns per workspace: indexes for the Sender, Start and Created sorts;
and a database check that nothing is Sending or Paused without approval.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 20:06:43.147025

"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaigns_created_at'))
        batch_op.create_index('ix_campaigns_ws_created', ['workspace_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_campaigns_ws_saddr', ['workspace_id', 'saddr', 'id'], unique=False)
        batch_op.create_check_constraint("sending_needs_approval",
                                         "status NOT IN ('Sending', 'Paused') OR moderation = 'approved'")
    # The Start column sorts by the actual start, else the planned one (expression index).
    op.execute("CREATE INDEX ix_campaigns_ws_start ON campaigns (workspace_id, coalesce(started_at, start_at), id)")


def downgrade():
    op.execute("DROP INDEX ix_campaigns_ws_start")
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_constraint("sending_needs_approval", type_="check")
        batch_op.drop_index('ix_campaigns_ws_saddr')
        batch_op.drop_index('ix_campaigns_ws_created')
        batch_op.create_index(batch_op.f('ix_campaigns_created_at'), ['created_at'], unique=False)
