"""The file store: upload spools and export files, readable from every host that runs Message Center.

Two backends, chosen by FILE_STORE:

- `local`: files under MC_DATA_DIR (`spool/`, `exports/`); the reference is the absolute path. One
  host only (or a shared filesystem) — the default with SQLite.
- `database`: files as chunks of FILE_STORE_CHUNK_BYTES (1 MB) in `file_chunks` of the main
  database, one `stored_files` row each; the reference is `db:<id>`. Any web host writes, any
  worker reads — the default with PostgreSQL.

A reference names its backend, so a file is always read from where it was written even if
FILE_STORE changes meanwhile. Both stream with flat memory: a writer holds one chunk, a reader one
chunk, and readers are seekable (the ingest resumes at a byte offset). A file is visible only once
complete (local: a `.part` renamed; database: `complete` set in the last transaction). A write
that fails (disk full, database refusing) removes what it wrote and raises FileStoreFailed; a
chunk missing from a complete file raises StoredFileMissing (a FileNotFoundError) — never a hang.
"""
import contextlib
import errno
import io
import logging
import os
import uuid
from datetime import timedelta

from flask import current_app, send_file
from sqlalchemy import delete as sql_delete
from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from extensions import db
from models import utcnow
from models.files import FileChunk, StoredFile
from services.errors import DomainError

log = logging.getLogger("mc.files")

DB_PREFIX = "db:"
LOCAL_DIRS = {"spool": "spool", "export": "exports", "evidence": "evidence"}


class FileStoreFailed(DomainError):
    """The file could not be stored; nothing of it was kept."""
    code = "file_store_failed"
    status = 503


class StoredFileMissing(FileNotFoundError):
    """A stored file (or one of its chunks) is gone."""


def _store_failed(exc):
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        why = "the server's disk is full"
    elif isinstance(exc, OSError):
        why = f"the server cannot write it ({exc.strerror or exc})"
    else:
        why = "the database refused it"
    return FileStoreFailed(f"The file could not be stored: {why}. Nothing was kept; try again later "
                           "or tell your administrator.")


# --- local directory ----------------------------------------------------------------------------

class LocalStore:
    name = "local"

    def __init__(self, data_dir):
        self.data_dir = data_dir

    def directory(self, kind):
        path = os.path.join(self.data_dir, LOCAL_DIRS[kind])
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    @contextlib.contextmanager
    def create(self, kind, suffix):
        path = os.path.join(self.directory(kind), f"{uuid.uuid4().hex}.{suffix}")
        part = path + ".part"
        try:
            raw = os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        except OSError as exc:
            raise _store_failed(exc) from exc
        try:
            yield _Writer(_LocalRaw(raw), path)
            try:
                raw.close()
                os.replace(part, path)
            except OSError as exc:
                raise _store_failed(exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                raw.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            raise

    def open(self, ref):
        try:
            return open(ref, "rb")
        except FileNotFoundError as exc:
            raise StoredFileMissing(f"{ref} is gone") from exc

    def exists(self, ref):
        return os.path.isfile(ref)

    def delete(self, ref):
        for name in (ref, ref + ".part"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def sweep_incomplete(self, older_than):
        """`.part` files older than `older_than` (a writer that died) are removed; returns how many."""
        cutoff = (utcnow() - older_than).timestamp()
        removed = 0
        for kind in LOCAL_DIRS:
            with os.scandir(self.directory(kind)) as entries:
                for entry in entries:
                    if entry.name.endswith(".part") and entry.stat().st_mtime < cutoff:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                            removed += 1
        return removed


# --- chunks in the database -----------------------------------------------------------------

class DatabaseStore:
    name = "database"

    def __init__(self, engine, chunk_bytes):
        self.engine = engine
        self.chunk_bytes = int(chunk_bytes)

    @contextlib.contextmanager
    def create(self, kind, suffix):
        file_id = f"{kind}-{uuid.uuid4().hex}.{suffix}"
        ref = DB_PREFIX + file_id
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise _store_failed(exc) from exc
        raw = _ChunkWriter(conn, file_id, kind, self.chunk_bytes)
        try:
            _guarded(raw.begin)
            yield _Writer(raw, ref)
            _guarded(raw.finish)
        except BaseException:
            raw.abort()
            raise
        finally:
            conn.close()

    def open(self, ref):
        file_id = ref[len(DB_PREFIX):]
        with self.engine.connect() as conn:
            row = conn.execute(select(StoredFile.size, StoredFile.chunk_bytes)
                               .where(StoredFile.id == file_id, StoredFile.complete.is_(True))).first()
        if row is None:
            raise StoredFileMissing(f"stored file {file_id} is gone")
        return _ChunkReader(self.engine, file_id, int(row.size), int(row.chunk_bytes))

    def exists(self, ref):
        with self.engine.connect() as conn:
            return conn.execute(select(StoredFile.id).where(StoredFile.id == ref[len(DB_PREFIX):],
                                                            StoredFile.complete.is_(True))).first() is not None

    def delete(self, ref):
        self._delete_ids([ref[len(DB_PREFIX):]])

    def _delete_ids(self, file_ids):
        with self.engine.begin() as conn:
            conn.execute(sql_delete(FileChunk).where(FileChunk.file_id.in_(file_ids)))
            conn.execute(sql_delete(StoredFile).where(StoredFile.id.in_(file_ids)))

    def sweep_incomplete(self, older_than):
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(StoredFile.id).where(StoredFile.complete.is_(False),
                                                                StoredFile.created_at < utcnow() - older_than))
                       .scalars())
        if ids:
            self._delete_ids(ids)
        return len(ids)


def _guarded(step):
    """A step of the database writer; a database error becomes FileStoreFailed."""
    try:
        step()
    except SQLAlchemyError as exc:
        raise _store_failed(exc) from exc


class _LocalRaw(io.RawIOBase):
    """The local file as a raw writer whose OS errors (disk full) are FileStoreFailed."""

    def __init__(self, fh):
        super().__init__()
        self.fh = fh

    def writable(self):
        return True

    def write(self, data):
        try:
            return self.fh.write(data)
        except OSError as exc:
            raise _store_failed(exc) from exc


class _ChunkWriter(io.RawIOBase):
    """Raw writer: buffers one chunk, inserts it in its own transaction on its own connection (so a
    1 GB upload is never one transaction, and the request's session is untouched)."""

    def __init__(self, conn, file_id, kind, chunk_bytes):
        super().__init__()
        self.conn, self.file_id, self.kind, self.chunk_bytes = conn, file_id, kind, chunk_bytes
        self.buffer = bytearray()
        self.seq = 0
        self.size = 0

    def writable(self):
        return True

    def begin(self):
        with self.conn.begin():
            self.conn.execute(insert(StoredFile).values(id=self.file_id, kind=self.kind, size=0,
                                                        chunk_bytes=self.chunk_bytes, complete=False,
                                                        created_at=utcnow()))

    def write(self, data):
        view = memoryview(data)
        taken = len(view)
        while view:
            room = self.chunk_bytes - len(self.buffer)
            self.buffer += view[:room]
            view = view[room:]
            if len(self.buffer) >= self.chunk_bytes:
                self._flush_chunk()
        return taken

    def _flush_chunk(self):
        if not self.buffer:
            return
        try:
            with self.conn.begin():
                self.conn.execute(insert(FileChunk).values(file_id=self.file_id, seq=self.seq,
                                                           data=bytes(self.buffer)))
        except SQLAlchemyError as exc:
            raise _store_failed(exc) from exc
        self.size += len(self.buffer)
        self.seq += 1
        self.buffer = bytearray()

    def finish(self):
        self._flush_chunk()
        with self.conn.begin():
            self.conn.execute(update(StoredFile).where(StoredFile.id == self.file_id)
                              .values(size=self.size, complete=True))

    def abort(self):
        """Remove what was written (best effort: the database may be the thing that failed; an
        incomplete file left behind is never read and `sweep_incomplete` removes it)."""
        self.buffer = bytearray()
        try:
            with contextlib.suppress(SQLAlchemyError):
                self.conn.rollback()
            with self.conn.begin():
                self.conn.execute(sql_delete(FileChunk).where(FileChunk.file_id == self.file_id))
                self.conn.execute(sql_delete(StoredFile).where(StoredFile.id == self.file_id))
        except SQLAlchemyError as exc:
            log.warning("[file-store] could not remove the partial file %s: %s", self.file_id, exc)


class _ChunkReader(io.RawIOBase):
    """Seekable reader of a stored file; holds one chunk. `read(n)` returns n bytes unless at the end
    (the ingest relies on full reads). Each chunk is one short query on a pooled connection."""

    def __init__(self, engine, file_id, size, chunk_bytes):
        super().__init__()
        self.engine, self.file_id, self.size, self.chunk_bytes = engine, file_id, size, chunk_bytes
        self.pos = 0
        self.cached_seq, self.cached = -1, b""

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self):
        return self.pos

    def _chunk(self, seq):
        if seq != self.cached_seq:
            with self.engine.connect() as conn:
                data = conn.execute(select(FileChunk.data).where(FileChunk.file_id == self.file_id,
                                                                 FileChunk.seq == seq)).scalar()
            if data is None:
                raise StoredFileMissing(f"chunk {seq} of stored file {self.file_id} is missing")
            self.cached_seq, self.cached = seq, bytes(data)
        return self.cached

    def read(self, size=-1):
        end = self.size if size is None or size < 0 else min(self.size, self.pos + size)
        parts = []
        while self.pos < end:
            seq, within = divmod(self.pos, self.chunk_bytes)
            chunk = self._chunk(seq)
            piece = chunk[within:within + (end - self.pos)]
            if not piece:
                raise StoredFileMissing(f"chunk {seq} of stored file {self.file_id} is short")
            parts.append(piece)
            self.pos += len(piece)
        return b"".join(parts)

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _Writer:
    """What `create()` yields: `write(bytes)`, `binary()` / `text()` for a buffered binary / UTF-8
    text layer, and `ref`."""

    def __init__(self, raw, ref):
        self.raw, self.ref = raw, ref

    def write(self, data):
        return self.raw.write(data)

    @contextlib.contextmanager
    def binary(self, buffering=1 << 20):
        buffered = io.BufferedWriter(self.raw, buffer_size=buffering)
        try:
            yield buffered
        finally:
            buffered.flush()
            buffered.detach()   # keep the raw writer open: create() finishes it

    @contextlib.contextmanager
    def text(self, buffering=1 << 20):
        buffered = io.BufferedWriter(self.raw, buffer_size=buffering)
        wrapper = io.TextIOWrapper(buffered, encoding="utf-8", newline="", write_through=False)
        try:
            yield wrapper
        finally:
            buffered = wrapper.detach()   # flushes; keep the raw writer open: create() finishes it
            buffered.flush()
            buffered.detach()


# --- the module's API -----------------------------------------------------------------------

def current():
    """The store new files go to (FILE_STORE)."""
    config = current_app.config
    if config["FILE_STORE"] == "database":
        return DatabaseStore(db.engine, config["FILE_STORE_CHUNK_BYTES"])
    return LocalStore(config["MC_DATA_DIR"])


def holding(ref):
    """The store that holds `ref` (by its prefix, whatever FILE_STORE says now)."""
    if ref and ref.startswith(DB_PREFIX):
        return DatabaseStore(db.engine, current_app.config["FILE_STORE_CHUNK_BYTES"])
    return LocalStore(current_app.config["MC_DATA_DIR"])


def create(kind, suffix):
    """Context manager: a new file of `kind` ("spool" | "export" | "evidence"); yields a writer with `.ref`."""
    return current().create(kind, suffix)


def open_file(ref):
    """A seekable binary reader of a complete file; StoredFileMissing when it is gone."""
    return holding(ref).open(ref)


def exists(ref):
    return bool(ref) and holding(ref).exists(ref)


def delete(ref):
    """Remove a file (no-op when it is already gone or `ref` is empty)."""
    if ref:
        holding(ref).delete(ref)


def send(ref, mimetype, download_name):
    """A download response: the file streamed from whichever store holds it (this host's disk, or
    the database when a worker on another host wrote it), with its length. StoredFileMissing when gone."""
    fh = open_file(ref)
    size = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    response = send_file(fh, mimetype=mimetype, as_attachment=True, download_name=download_name,
                         conditional=False, etag=False, max_age=0)
    response.content_length = size
    return response


def sweep_incomplete(older_than=timedelta(hours=6)):
    """Remove files whose writer died before finishing (never read by anyone); returns how many."""
    return current().sweep_incomplete(older_than)
