"""The database file store: upload spools and export files as chunks in the main database.

`stored_files` has one row per file (its size, chunk size and whether it was written to the end);
`file_chunks` holds the content, about 1 MB a row, keyed by (file_id, seq). Nothing existing
moves: files already in MC_DATA_DIR keep their paths (a local path in `uploads.spool_path` /
`exports.path` is read from the disk as before). Downgrade drops both tables (files stored there
are lost: finish the ingests and let exports expire first).

Revision ID: 0013
Revises: 0008
Create Date: 2026-11-28 11:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stored_files',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('chunk_bytes', sa.Integer(), nullable=False),
        sa.Column('complete', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_stored_files')),
    )
    op.create_table(
        'file_chunks',
        sa.Column('file_id', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('file_id', 'seq', name=op.f('pk_file_chunks')),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Stored out of line without compression: chunks are written and read whole, and
        # compressing 1 MB per chunk would cost the upload request more than it saves.
        op.execute("ALTER TABLE file_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade():
    op.drop_table('file_chunks')
    op.drop_table('stored_files')
