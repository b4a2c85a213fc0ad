"""Four-eyes over everyone who shaped a campaign, and approvals bound by a fingerprint.

- `campaign_contributors`: one row per person who created, edited, uploaded recipients to,
  submitted, restored or took over a campaign (first action and when). Filled from what the
  tables already know: each campaign's author ("created") and each upload's uploader ("uploaded").
- `campaigns.approval_fingerprint` / `approval_basis`: the SHA-256 and canonical JSON of what a
  moderator approved (services/approval.py). Campaigns approved before this revision get the
  marker `pre-0009`: their first dispatch records the fingerprint of what they hold then.
- `uploads.sha256`: the uploaded file's digest, part of the fingerprint's recipient set.
- `sender_revisions.submitted_by_id`: who sent a draft revision to moderation (four-eyes);
  backfilled with the proposer for revisions already submitted.

Revision ID: 0009
Revises: 0011
Create Date: 2026-11-28 08:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = "0011"
branch_labels = None
depends_on = None

LEGACY = 'pre-0009'


def upgrade():
    op.create_table(
        'campaign_contributors',
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('workspace_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=30), nullable=False),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('created', 'edited', 'uploaded', 'submitted', 'restored', 'owner', "
                           "'cloned_from')", name=op.f('ck_campaign_contributors_action_known')),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                                name=op.f('fk_campaign_contributors_campaign_id_campaigns'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_campaign_contributors_user_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
                                name=op.f('fk_campaign_contributors_workspace_id_workspaces'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('campaign_id', 'user_id', name=op.f('pk_campaign_contributors')),
    )
    with op.batch_alter_table('campaign_contributors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_contributors_user_id'), ['user_id'], unique=False)
    # Plain ALTERs (not batch): a batch copy of `campaigns` on SQLite would lose the expression
    # index ix_campaigns_ws_start (0005), which SQLAlchemy cannot reflect.
    op.add_column('campaigns', sa.Column('approval_fingerprint', sa.String(length=64), nullable=True))
    op.add_column('campaigns', sa.Column('approval_basis', sa.Text(), nullable=True))
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))
    with op.batch_alter_table('sender_revisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submitted_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_sender_revisions_submitted_by_id_users'), 'users',
                                    ['submitted_by_id'], ['id'], ondelete='SET NULL')

    # What the tables already say about who shaped each campaign.
    op.execute("""
        INSERT INTO campaign_contributors (campaign_id, user_id, workspace_id, role, action, at)
        SELECT c.id, c.author_id, c.workspace_id, COALESCE(m.role, 'author'), 'created', c.created_at
        FROM campaigns c LEFT JOIN memberships m ON m.workspace_id = c.workspace_id AND m.user_id = c.author_id
        WHERE c.author_id IS NOT NULL
    """)
    op.execute("""
        INSERT INTO campaign_contributors (campaign_id, user_id, workspace_id, role, action, at)
        SELECT u.campaign_id, u.created_by_id, u.workspace_id, COALESCE(MIN(m.role), 'author'), 'uploaded',
               MIN(u.created_at)
        FROM uploads u LEFT JOIN memberships m ON m.workspace_id = u.workspace_id AND m.user_id = u.created_by_id
        WHERE u.created_by_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM campaign_contributors cc WHERE cc.campaign_id = u.campaign_id AND cc.user_id = u.created_by_id)
        GROUP BY u.campaign_id, u.created_by_id, u.workspace_id
    """)
    op.execute(f"UPDATE campaigns SET approval_fingerprint = '{LEGACY}' WHERE moderation = 'approved'")
    op.execute("UPDATE sender_revisions SET submitted_by_id = created_by_id WHERE submitted_at IS NOT NULL")


def downgrade():
    with op.batch_alter_table('sender_revisions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sender_revisions_submitted_by_id_users'), type_='foreignkey')
        batch_op.drop_column('submitted_by_id')
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_column('sha256')
    op.drop_column('campaigns', 'approval_basis')        # SQLite ≥ 3.35 drops columns in place
    op.drop_column('campaigns', 'approval_fingerprint')
    with op.batch_alter_table('campaign_contributors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaign_contributors_user_id'))
    op.drop_table('campaign_contributors')
