"""ctn_hash keyed per workspace: every stored hash is recomputed with its workspace's key.

Until now `ctn_hash` was HMAC-SHA-256(CTN_HASH_KEY, number) for the whole installation, so the
same number had the same hash in every workspace and a hash table built in one workspace
unmasked numbers in another. From this revision the key of workspace W is
HMAC-SHA-256(CTN_HASH_KEY, "ctn-hash:W") (services/numbers.py `derive_hash_key`); CTN_HASH_KEY is
read from the app's configuration exactly as the app reads it (config.py: CTN_HASH_KEY, else
SECRET_KEY). SQLite has no HMAC, so the hashes are computed here in Python, on both backends.

`recipients` (workspace through the campaign) and `stop_list` are walked in keyset batches of
BATCH rows by id — each batch is one short SELECT and one UPDATE, so memory stays flat whatever
the table size. The whole rehash is one transaction (Alembic's): a crash leaves every row with
its old hash and the revision at 0007, so code and data never disagree. Stop the workers (and
the web, whose Trigger API writes recipients) while it runs; at about 10⁵ rows/s it is minutes
for tens of millions of recipients.

Recipients anonymised by GDPR mode (a `*` in the number) no longer have their number: their old
hash is re-keyed instead (HMAC of the old digest with the workspace key, so nothing derived from
the installation-wide key stays) and their token rebuilt from it, keeping the last digits.

The derivation is written out here (not imported) so this revision keeps doing what it did when
the app code changes later; tests/integration/test_migrations.py checks that the hashes it writes
equal the app's `ctn_hash`.

Downgrade recomputes the installation-wide hashes from the numbers; anonymised recipients keep
their re-keyed hash (their number is gone, by design).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 08:40:00

"""
import base64
import hmac

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BATCH = 5000
CONTEXT = b"ctn-hash:"
ANONYMISED_CONTEXT = b"anonymised:"
MARK, TAIL = "*", 3            # services/gdpr.py: the anonymised token's mark and kept digits

# The batch reads walk the primary key only (a join to campaigns here let SQLite scan every
# campaign's rows per batch); a campaign's workspace comes from a small per-run lookup.
RECIPIENTS = sa.text("SELECT id, number, ctn_hash, campaign_id FROM recipients WHERE id > :last ORDER BY id LIMIT :n")
STOP_LIST = sa.text("SELECT id, number, NULL, workspace_id FROM stop_list WHERE id > :last ORDER BY id LIMIT :n")


def _installation_key():
    return current_app.config["CTN_HASH_KEY"].encode("utf-8")


def _workspace_keys(installation):
    keys = {}

    def key(workspace_id):
        if workspace_id not in keys:
            keys[workspace_id] = hmac.digest(installation, CONTEXT + str(int(workspace_id)).encode("ascii"), "sha256")
        return keys[workspace_id]

    return key


def _anonymised_token(number, digest):
    head = base64.b32encode(digest[:7]).decode("ascii")[:15 - TAIL - 1]
    return f"{head}{MARK}{number[-TAIL:]}"


def _workspace_of_campaign(bind):
    workspaces = {}

    def workspace(campaign_id):
        if campaign_id not in workspaces:
            workspaces[campaign_id] = bind.execute(sa.text("SELECT workspace_id FROM campaigns WHERE id = :c"),
                                                   {"c": campaign_id}).scalar()
        return workspaces[campaign_id]

    return workspace


def _walk(bind, select, table, new_values, owner=None):
    """Keyset batches of (id, number, old hash, workspace id); `new_values(row)` -> (hash, new number
    or None).
    `owner` maps the fourth column to the workspace id (recipients: from the campaign id)."""
    last = 0
    while True:
        rows = bind.execute(select, {"last": last, "n": BATCH}).all()
        if not rows:
            return
        if owner is not None:
            rows = [(i, number, old, owner(campaign_id)) for i, number, old, campaign_id in rows]
        # A recipient whose campaign is gone (none should be: a trigger deletes them together) is skipped.
        _update(bind, table, [(row[0], *new_values(row)) for row in rows if row[3] is not None])
        last = rows[-1][0]


def _update(bind, table, changes):
    """Write (id, hash, number-or-None) triples: one statement per batch on PostgreSQL, executemany
    on SQLite. `number` is written only where it changes (anonymised rows), so the unique index
    on it is left alone for every other row."""
    renamed = [{"id": c[0], "n": c[2]} for c in changes if c[2] is not None]
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(
            f"UPDATE {table} AS t SET ctn_hash = v.h "  # noqa: S608 (fixed table names)
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:hs AS text[])) AS v(id, h) WHERE t.id = v.id"),
            {"ids": [c[0] for c in changes], "hs": [c[1] for c in changes]})
    else:  # the driver's executemany: SQLAlchemy's per-row parameter handling cost more than SQLite
        bind.exec_driver_sql(f"UPDATE {table} SET ctn_hash = ? WHERE id = ?",  # noqa: S608
                             [(c[1], c[0]) for c in changes])
    if renamed:
        bind.execute(sa.text(f"UPDATE {table} SET number = :n WHERE id = :id"), renamed)  # noqa: S608


def upgrade():
    bind = op.get_bind()
    key = _workspace_keys(_installation_key())

    def rehash(row):
        _, number, old, workspace_id = row
        if MARK in number:  # anonymised: re-key the old digest, rebuild the token from it
            digest = hmac.digest(key(workspace_id), ANONYMISED_CONTEXT + bytes.fromhex(old), "sha256")
            return digest.hex(), _anonymised_token(number, digest)
        return hmac.digest(key(workspace_id), number.encode("ascii"), "sha256").hex(), None

    _walk(bind, RECIPIENTS, "recipients", rehash, owner=_workspace_of_campaign(bind))
    _walk(bind, STOP_LIST, "stop_list", rehash)


def downgrade():
    bind = op.get_bind()
    installation = _installation_key()

    def rehash(row):
        _, number, old, _ = row
        if MARK in number:
            return old, None
        return hmac.digest(installation, number.encode("ascii"), "sha256").hex(), None

    _walk(bind, RECIPIENTS, "recipients", rehash, owner=_workspace_of_campaign(bind))
    _walk(bind, STOP_LIST, "stop_list", rehash)
