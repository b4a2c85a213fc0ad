"""Throw-away resources for benchmarks and the browser tests: a free loopback port and a fresh
database (SQLite in the data dir, or a new database on the PostgreSQL server DATABASE_URL names)."""
import os
import re
import socket
import urllib.parse
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(data_dir, prefix="mc_scratch"):
    """Returns (SQLAlchemy URL, handle for drop_database); the handle is None for SQLite."""
    base = os.environ.get("DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        return f"sqlite:///{os.path.join(data_dir, prefix + '.db')}", None
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    plain = re.sub(r"^postgresql\+\w+://", "postgresql://", base)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), (plain, name)


def drop_database(handle):
    if not handle:
        return
    import psycopg

    plain, name = handle
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
