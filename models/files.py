"""The database file store's tables (services/file_store.py): one row per stored file and its
content in chunks of about FILE_STORE_CHUNK_BYTES, so any host reads what another host wrote."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class StoredFile(Model):
    __tablename__ = "stored_files"

    id = db.Column(db.String(64), primary_key=True)          # generated name, e.g. "spool-<hex>"
    kind = db.Column(db.String(16), nullable=False)          # spool | export
    size = db.Column(db.BigInteger, nullable=False, default=0)
    chunk_bytes = db.Column(db.Integer, nullable=False)      # every chunk but the last has this size
    complete = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)


class FileChunk(Model):
    __tablename__ = "file_chunks"

    # No foreign key: chunks are removed with their file by services/file_store.py (in batches).
    file_id = db.Column(db.String(64), primary_key=True)
    seq = db.Column(db.Integer, primary_key=True, autoincrement=False)
    data = db.Column(db.LargeBinary, nullable=False)
