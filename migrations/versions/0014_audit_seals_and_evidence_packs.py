"""Sealed audit checkpoints (audit_seals), their verifications, and evidence packs.

Revision ID: 0014
Revises: 0008
Create Date: 2026-11-28 11:20:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_seals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('lower_ms', sa.BigInteger(), nullable=True),
    sa.Column('upper_ms', sa.BigInteger(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('first_event_id', sa.String(length=64), nullable=True),
    sa.Column('last_event_id', sa.String(length=64), nullable=True),
    sa.Column('prev_root', sa.String(length=64), nullable=False),
    sa.Column('root', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.Column('leaves', sa.Text(), nullable=False),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_seals')),
    sa.UniqueConstraint('position', name=op.f('uq_audit_seals_position'))
    )
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_seals_upper_ms'), ['upper_ms'], unique=False)

    op.create_table('audit_verifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=12), nullable=False),
    sa.Column('seals', sa.Integer(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('first_bad_event', sa.String(length=64), nullable=True),
    sa.Column('message', sa.String(length=500), nullable=True),
    sa.Column('since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('workspace_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
                            name=op.f('fk_audit_verifications_workspace_id_workspaces'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_verifications'))
    )

    op.create_table('evidence_packs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('unmasked', sa.Boolean(), nullable=False),
    sa.Column('recipients', sa.BigInteger(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_evidence_packs_campaign_id_campaigns'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_evidence_packs_created_by_id_users'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
                            name=op.f('fk_evidence_packs_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence_packs'))
    )
    with op.batch_alter_table('evidence_packs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_packs_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_packs_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_packs_workspace_id'), ['workspace_id'], unique=False)


def downgrade():
    with op.batch_alter_table('evidence_packs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_packs_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_evidence_packs_expires_at'))
        batch_op.drop_index(batch_op.f('ix_evidence_packs_campaign_id'))
    op.drop_table('evidence_packs')
    op.drop_table('audit_verifications')
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_seals_upper_ms'))
    op.drop_table('audit_seals')
