"""Storing one chunk of normalised numbers as recipients, inside the caller's transaction.

PostgreSQL: the chunk is de-duplicated in memory (it is bounded by UPLOAD_CHUNK_LINES); the
numbers the campaign already has and the stop-listed ones (the workspace's and the Master list) are found with a range
scan of their unique index (or per-number probes, see `Probe`); the new rows are sorted, hashed
and streamed with `COPY … FROM STDIN` straight into `recipients`, so PostgreSQL inserts on one
core while Python hashes the next batch on the other. (An `INSERT … SELECT … ON CONFLICT` from a
staging table inserts row by row; it took about twice as long for a million rows.) The caller
holds the campaign row lock, so no other writer adds numbers to this campaign in between; if one
did, the unique index still refuses the duplicate and the job is retried from its offset.

SQLite: the rows go through a temporary staging table and `INSERT OR IGNORE`, one transaction
per chunk like PostgreSQL.
"""
from typing import Any, cast

from sqlalchemy import text

from extensions import affected_rows, db
from services.numbers import ctn_hasher
from services.stoplist import owners as stop_list_owners

COPY_BATCH = 4096      # rows per COPY write: Python hashes the next batch while PostgreSQL inserts


class Probe:
    """How to find a chunk's numbers already stored, remembered for the rest of one ingest run.

    A range scan of the unique index between the chunk's lowest and highest number costs a
    fraction of one index probe per number, and for a sorted file (most exports) the range holds
    little besides the chunk itself. When a range turns out dense (a shuffled file into a big
    campaign), the run switches to per-number probes for good.
    """

    def __init__(self):
        self.by_range = {"recipients": True, "stop_list": True}


def store_numbers(campaign_id, workspace_id, upload_id, parts, key, *, campaign_empty=False, probe=None):
    """Insert the chunk's new numbers; returns (inserted, stop_listed, duplicates).

    `parts` are the chunk's numbers as newline-joined ASCII blobs (`Chunk.parts`). A number
    already in the campaign (or twice in the chunk) is a duplicate; a stop-listed one is counted
    and not stored. `campaign_empty` skips the probe for existing numbers (a fresh campaign).
    """
    total, unique = 0, {}          # a dict keeps file order, so sorting a sorted file costs nothing
    for part in parts:
        numbers = part.split(b"\n")
        total += len(numbers)
        unique.update(dict.fromkeys(numbers))
    if not total:
        return 0, 0, 0
    if db.session.get_bind().dialect.name == "postgresql":
        inserted, stop = _store_postgresql(campaign_id, workspace_id, upload_id, unique, key, campaign_empty,
                                           probe or Probe())
    else:
        inserted, stop = _store_sqlite(campaign_id, workspace_id, upload_id, unique, key)
    # Every line of a stop-listed number counts as stop-listed, not as a duplicate.
    stop_listed = sum(1 for part in parts for n in part.split(b"\n") if n in stop) if stop else 0
    return inserted, stop_listed, total - inserted - stop_listed


def _present(cur, table, owner_column, owner_id, chunk, probe):
    """The numbers of `chunk` (ASCII bytes, a dict or set) already in `table` for this owner."""
    if probe.by_range[table]:
        lo, hi = min(chunk).decode("ascii"), max(chunk).decode("ascii")
        cur.execute(f"SELECT number FROM {table} WHERE {owner_column} = %s AND number BETWEEN %s AND %s "  # noqa: S608
                    "LIMIT %s", (owner_id, lo, hi, len(chunk) + 1))
        if cur.rowcount <= len(chunk):
            return {n for n in (row[0].encode("ascii") for row in cur) if n in chunk}
        probe.by_range[table] = False
    cur.execute(f"SELECT number FROM {table} WHERE {owner_column} = %s "  # noqa: S608
                "AND number = ANY(string_to_array(%s, ','))", (owner_id, b",".join(chunk).decode("ascii")))
    return {row[0].encode("ascii") for row in cur}


def _store_postgresql(campaign_id, workspace_id, upload_id, unique, key, campaign_empty, probe):
    """COPY the numbers of `unique` that are neither stored nor stop-listed; returns (inserted, stop set)."""
    conn = cast(Any, db.session.connection().connection.driver_connection)  # psycopg's: COPY, server cursors
    with conn.cursor() as cur:
        stop = set()
        for owner in stop_list_owners(workspace_id):  # the workspace's own list and the Master one
            if cur.execute("SELECT 1 FROM stop_list WHERE workspace_id = %s LIMIT 1", (owner,)).fetchone():
                stop |= _present(cur, "stop_list", "workspace_id", owner, unique, probe)
        existing = set() if campaign_empty else _present(cur, "recipients", "campaign_id", campaign_id, unique, probe)
        # In index order, consecutive rows land on the same leaf pages of the unique index: a
        # shuffled file then loads almost as fast as a sorted one.
        new = [n for n in unique if n not in existing and n not in stop] if existing or stop else list(unique)
        new.sort()
        hash_number = ctn_hasher(key)
        head, tail = b"%d\t%d\t" % (campaign_id, upload_id), b"\tqueued\n"
        with cur.copy("COPY recipients (campaign_id, upload_id, number, ctn_hash, state) FROM STDIN") as copy:
            for start in range(0, len(new), COPY_BATCH):
                copy.write(b"".join([head + n + b"\t" + hash_number(n) + tail for n in new[start:start + COPY_BATCH]]))
    return len(new), stop


def _store_sqlite(campaign_id, workspace_id, upload_id, unique, key):
    hash_number = ctn_hasher(key)
    db.session.execute(text("CREATE TEMP TABLE IF NOT EXISTS mc_stage (number TEXT NOT NULL, ctn_hash TEXT NOT NULL)"))
    db.session.execute(text("DELETE FROM mc_stage"))
    raw = cast(Any, db.session.connection().connection.driver_connection)  # sqlite3's: executemany
    raw.executemany("INSERT INTO mc_stage (number, ctn_hash) VALUES (?, ?)",
                    ((n.decode("ascii"), hash_number(n).decode("ascii")) for n in sorted(unique)))
    lists = stop_list_owners(workspace_id)  # the workspace's own stop-list and the Master one
    params = {"c": campaign_id, "w": lists[0], "m": lists[-1], "u": upload_id}
    stop = {row[0].encode("ascii") for row in db.session.execute(text(
        "SELECT DISTINCT s.number FROM mc_stage s JOIN stop_list x ON x.workspace_id IN (:w, :m) "
        "AND x.number = s.number"), params)}
    inserted = affected_rows(db.session.execute(text(
        "INSERT OR IGNORE INTO recipients (campaign_id, upload_id, number, ctn_hash, state) "
        "SELECT :c, :u, s.number, s.ctn_hash, 'queued' FROM mc_stage s "
        "WHERE NOT EXISTS (SELECT 1 FROM stop_list x WHERE x.workspace_id IN (:w, :m) AND x.number = s.number)"),
        params))
    db.session.execute(text("DELETE FROM mc_stage"))
    return inserted, stop
