"""API tokens get a lifetime and a reason for their end.

`expires_at` is chosen at creation (TOKEN_DEFAULT_DAYS, at most TOKEN_MAX_DAYS). Tokens that exist
when this revision runs had no expiry: they get 90 days from the upgrade (the default lifetime),
so client systems keep working and their owners have time to issue new ones; tokens that were
already revoked keep their revocation. `revoked_reason` records why a token ended (owner, admin,
password change, sign out everywhere, removal from the workspace, role change).

Downgrade drops both columns: tokens are then valid until revoked again, as before.

Revision ID: 0011
Revises: 0007
Create Date: 2026-11-28 08:30:00

"""
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0007'
branch_labels = None
depends_on = None

GRACE_DAYS = 90  # existing tokens: the default lifetime, counted from the upgrade


def upgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_reason', sa.String(length=40), nullable=True))
    tokens = sa.table('api_tokens', sa.column('expires_at', sa.DateTime(timezone=True)),
                      sa.column('revoked_at', sa.DateTime(timezone=True)),
                      sa.column('revoked_reason', sa.String(length=40)))
    until = datetime.now(UTC) + timedelta(days=GRACE_DAYS)
    op.execute(tokens.update().values(expires_at=until))
    op.execute(tokens.update().where(tokens.c.revoked_at.isnot(None)).values(revoked_reason='revoked'))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('revoked_reason')
        batch_op.drop_column('expires_at')
