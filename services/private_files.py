"""Secrets out of files: MC_DATA_DIR, the SQLite database and key files are private to the service user.

MC_DATA_DIR holds the database, the development secret key, certificate keys, upload spools
(phone numbers), exports and the audit fallback file, so it is created 0700 (an existing one of
ours is tightened to 0700), and the SQLite database file — with its -wal/-shm/-journal
companions, which SQLite creates with the database file's mode — is kept 0600.
"""
import logging
import os
import stat

from sqlalchemy import event

log = logging.getLogger("mc.files")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path):
    """Create `path` 0700 (parents as needed), or tighten it to 0700 when it is ours and wider."""
    os.makedirs(path, mode=PRIVATE_DIR, exist_ok=True)
    _tighten(path, PRIVATE_DIR)
    return path


def private_file(path):
    """Tighten an existing file of ours to 0600 (no-op when missing)."""
    _tighten(path, PRIVATE_FILE)


def _tighten(path, mode):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_uid != os.getuid():  # not ours (a shared mount): say so, never fail the start
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning("%s is readable by others (mode %o) and not owned by this user; tighten it", path,
                        stat.S_IMODE(st.st_mode))
        return
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def protect_sqlite(engine):
    """Keep a file-backed SQLite database 0600: tightened on every new connection (the file is created
    by the first one, with the process umask)."""
    if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return
    path = os.path.abspath(engine.url.database)

    @event.listens_for(engine, "connect")
    def _private_database(dbapi_connection, connection_record):
        for name in (path, path + "-wal", path + "-shm", path + "-journal"):
            private_file(name)
