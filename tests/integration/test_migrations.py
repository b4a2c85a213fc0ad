"""Migrations: one head, and every revision upgrades and downgrades with data in the tables."""
import os
from datetime import UTC

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from extensions import db

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "..", "migrations")


def test_single_head():
    script = ScriptDirectory.from_config(_alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()


def test_models_match_migrations(app):
    """Autogenerate finds nothing to do: models and migrations describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
    assert diff == []


def test_master_workspace_exists_from_first_migration():
    assert db.session.execute(text("SELECT name FROM workspaces WHERE slug = 'master'")).scalar() == "Master"


def test_downgrade_and_upgrade_with_data(app):
    from tests.factories import make_user, make_workspace

    ws = make_workspace("keepme")
    make_user("kept@example.com", workspace=ws, role="admin")
    db.session.remove()
    script = ScriptDirectory.from_config(_alembic_config())
    revisions = [r.revision for r in script.walk_revisions()]  # newest first
    try:
        for older in revisions[1:]:
            downgrade(revision=older)
        assert "campaigns" not in inspect(db.engine).get_table_names()
        upgrade()
        tables = inspect(db.engine).get_table_names()
        assert {"campaigns", "recipients", "sender_revisions"} <= set(tables)
        email = db.session.execute(text("SELECT email FROM users")).scalar()
        assert email == "kept@example.com"
    finally:
        upgrade()


@pytest.mark.postgres_only
def test_approved_revision_trigger_installed_on_postgres():
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    names = db.session.execute(text("SELECT tgname FROM pg_trigger WHERE tgname = 'sender_revision_immutable'"))
    assert names.scalar() == "sender_revision_immutable"


def _alembic_config():
    cfg = Config(os.path.join(MIGRATIONS, "alembic.ini"))
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def test_deleting_a_campaign_deletes_its_recipients_without_a_foreign_key(app):
    """Migration 0007 dropped the per-row foreign key; the delete trigger keeps the cascade."""
    from tests.campaign_factories import add_recipients, make_campaign
    from tests.factories import make_user, make_workspace

    ws = make_workspace("cascade")
    author = make_user("cascade@example.com", workspace=ws, role="author")
    gone, kept = make_campaign(ws, author, name="gone"), make_campaign(ws, author, name="kept")
    add_recipients(gone, ["491700000001", "491700000002", "491700000003"])
    add_recipients(kept, ["491700000001", "491700000002"])
    db.session.commit()
    gone_id, kept_id = gone.id, kept.id
    db.session.execute(text("DELETE FROM campaigns WHERE id = :c"), {"c": gone_id})
    db.session.commit()
    count = "SELECT count(*) FROM recipients WHERE campaign_id = :c"
    assert db.session.execute(text(count), {"c": gone_id}).scalar() == 0
    assert db.session.execute(text(count), {"c": kept_id}).scalar() == 2


def test_0011_token_lifetime_upgrades_and_downgrades_with_tokens_in_the_table(app, client):
    """Existing tokens get 90 days from the upgrade (client systems keep working), revoked ones keep
    their revocation with the reason 'revoked'; downgrade drops both columns and keeps the rows."""
    from datetime import datetime, timedelta

    from models import ApiToken
    from services import tokens
    from tests.factories import make_user, make_workspace

    ws = make_workspace("tokens")
    owner = make_user("owner@example.com", workspace=ws, role="admin")
    live, live_token = tokens.create_token(owner, ws, "live")
    revoked, revoked_token = tokens.create_token(owner, ws, "revoked")
    tokens.revoke(owner, ws, revoked.id)
    ids = (live.id, revoked.id)
    db.session.remove()
    script = ScriptDirectory.from_config(_alembic_config())
    try:
        downgrade(revision=script.get_revision("0011").down_revision)
        columns = {c["name"] for c in inspect(db.engine).get_columns("api_tokens")}
        assert "expires_at" not in columns and "revoked_reason" not in columns
        assert db.session.execute(text("SELECT count(*) FROM api_tokens")).scalar() == 2
        db.session.remove()
        upgrade()
        rows = {r.id: r for r in db.session.execute(db.select(ApiToken).where(ApiToken.id.in_(ids))).scalars()}
        soon = datetime.now(UTC) + timedelta(days=90)
        for row in rows.values():
            assert abs(row.expires_at - soon) < timedelta(minutes=5)
        assert rows[live.id].revoked_reason is None and rows[live.id].revoked_at is None
        assert rows[revoked.id].revoked_reason == "revoked" and rows[revoked.id].revoked_at is not None
        db.session.remove()
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {live_token}"}).status_code == 200
        refused = client.get("/api/v1/me", headers={"Authorization": f"Bearer {revoked_token}"})
        assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "token_revoked"
    finally:
        upgrade()


def test_0009_contributors_and_fingerprints_upgrade_and_downgrade_with_data(app):
    """0009 fills the contributors from what the tables know (authors, uploaders), marks campaigns
    approved before fingerprints, remembers who submitted each revision; downgrade keeps the rows."""
    from models import Upload
    from tests.campaign_factories import make_campaign, make_sender
    from tests.factories import make_user, make_workspace

    ws = make_workspace("fours")
    author = make_user("author@fours.test", workspace=ws, role="author")
    admin = make_user("admin@fours.test", workspace=ws, role="admin")
    revision = make_sender(ws, "FOURS", created_by=admin)
    approved = make_campaign(ws, author, sender=revision, status="Sending", moderation="approved")
    draft = make_campaign(ws, author, sender=revision)
    db.session.add(Upload(workspace_id=ws.id, campaign_id=draft.id, created_by_id=admin.id, source="api",
                          spool_path="/nonexistent", state="done"))
    db.session.commit()
    ids = {"approved": approved.id, "draft": draft.id, "author": author.id, "admin": admin.id,
           "revision": revision.id}
    db.session.remove()
    before = ScriptDirectory.from_config(_alembic_config()).get_revision("0009").down_revision
    try:
        downgrade(revision=before)
        columns = {c["name"] for c in inspect(db.engine).get_columns("campaigns")}
        assert "approval_fingerprint" not in columns and "campaign_contributors" not in inspect(db.engine).get_table_names()
        assert db.session.execute(text("SELECT count(*) FROM campaigns")).scalar() == 2
        db.session.remove()

        upgrade(revision="0009")
        rows = set(db.session.execute(text("SELECT campaign_id, user_id, role, action FROM campaign_contributors")))
        assert rows == {(ids["approved"], ids["author"], "author", "created"),
                        (ids["draft"], ids["author"], "author", "created"),
                        (ids["draft"], ids["admin"], "admin", "uploaded")}
        marks = dict(db.session.execute(text("SELECT id, approval_fingerprint FROM campaigns")).all())
        assert marks == {ids["approved"]: "pre-0009", ids["draft"]: None}
        assert db.session.execute(text("SELECT submitted_by_id FROM sender_revisions WHERE id = :r"),
                                  {"r": ids["revision"]}).scalar() == ids["admin"]
        assert "sha256" in {c["name"] for c in inspect(db.engine).get_columns("uploads")}
        # The expression index of 0005 survives (no batch copy of campaigns).
        if db.engine.dialect.name == "sqlite":
            assert db.session.execute(text("SELECT name FROM sqlite_master WHERE name = 'ix_campaigns_ws_start'")
                                      ).scalar() == "ix_campaigns_ws_start"
        db.session.remove()

        downgrade(revision=before)
        assert "campaign_contributors" not in inspect(db.engine).get_table_names()
        assert "submitted_by_id" not in {c["name"] for c in inspect(db.engine).get_columns("sender_revisions")}
        assert db.session.execute(text("SELECT count(*) FROM uploads")).scalar() == 1
        db.session.remove()
    finally:
        upgrade()


def test_0010_rehashes_every_row_with_its_workspace_key_in_batches(app):
    """Rows hashed the old way (one installation-wide key) get their workspace's hash on upgrade —
    the same value the app computes — across several keyset batches, on SQLite and PostgreSQL; the
    downgrade brings the installation-wide hashes back."""
    import hmac

    from services import gdpr
    from services.numbers import ctn_hash
    from tests.campaign_factories import make_campaign
    from tests.factories import make_user, make_workspace

    acme, bravo = make_workspace("acme"), make_workspace("bravo")
    a, b = (make_campaign(ws, make_user(f"author@{ws.slug}.test", workspace=ws, role="author"), name="c")
            for ws in (acme, bravo))
    many = [f"4917{i:08d}" for i in range(11_000)]  # 0010 walks BATCH = 5,000 rows at a time
    rows = [{"c": a.id, "n": n, "h": "0" * 64} for n in many] + [{"c": b.id, "n": n, "h": "0" * 64} for n in many[:50]]
    db.session.execute(text("INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                            "VALUES (:c, :n, :h, 'queued')"), rows)
    db.session.execute(text("INSERT INTO stop_list (workspace_id, number, ctn_hash, reason, created_at) "
                            "VALUES (:w, '491700000001', :h, '', CURRENT_TIMESTAMP)"),
                       [{"w": acme.id, "h": "0" * 64}, {"w": bravo.id, "h": "0" * 64}])
    db.session.commit()
    ids = {"acme": acme.id, "bravo": bravo.id, "a": a.id, "b": b.id}
    db.session.remove()

    installation = app.config["CTN_HASH_KEY"].encode()
    recipients_sql = ("SELECT r.number, r.ctn_hash, c.workspace_id FROM recipients r "
                      "JOIN campaigns c ON c.id = r.campaign_id ORDER BY r.id")
    try:
        downgrade(revision="0007")
        old = db.session.execute(text(recipients_sql)).all()
        assert len(old) == 11_050
        assert all(h == hmac.digest(installation, n.encode(), "sha256").hex() for n, h, _ in old)
        # GDPR mode anonymised one recipient of bravo before the upgrade: its number is gone.
        gone = "491700000007"
        gone_hash = hmac.digest(installation, gone.encode(), "sha256").hex()
        db.session.execute(text("UPDATE recipients SET number = :t WHERE campaign_id = :b AND number = :n"),
                           {"t": gdpr.anonymised_number(gone, gone_hash), "b": ids["b"], "n": gone})
        db.session.commit()
        db.session.remove()

        upgrade()
        new = db.session.execute(text(recipients_sql)).all()
        assert len(new) == 11_050
        for number, digest, workspace_id in new:
            if gdpr.is_anonymised(number):
                continue
            assert digest == ctn_hash(number, workspace_id)
        by_ws = {(w, n): h for n, h, w in new}
        assert by_ws[(ids["acme"], "491700000001")] != by_ws[(ids["bravo"], "491700000001")]
        stop = dict(db.session.execute(text("SELECT workspace_id, ctn_hash FROM stop_list")).all())
        assert stop == {ids["acme"]: ctn_hash("491700000001", ids["acme"]),
                        ids["bravo"]: ctn_hash("491700000001", ids["bravo"])}
        # The anonymised row keeps its tail and its mark, and nothing of the installation-wide hash.
        (token, digest), = db.session.execute(text(
            "SELECT number, ctn_hash FROM recipients WHERE campaign_id = :b AND number LIKE '%*%'"), {"b": ids["b"]})
        assert gdpr.is_anonymised(token) and token.endswith(gone[-3:])
        assert digest not in (gone_hash, ctn_hash(gone, ids["bravo"]), ctn_hash(gone, ids["acme"]))
        assert token != gdpr.anonymised_number(gone, gone_hash)
        db.session.remove()  # the reads above hold table locks that the downgrade's ALTERs wait for

        downgrade(revision="0007")
        back = db.session.execute(text(recipients_sql)).all()
        assert all(h == hmac.digest(installation, n.encode(), "sha256").hex()
                   for n, h, _ in back if not gdpr.is_anonymised(n))
    finally:
        db.session.remove()
        upgrade()


def test_0010_reads_the_key_as_the_app_does(app):
    """CTN_HASH_KEY, when set, is the installation key (not SECRET_KEY) for the migration too."""
    from services.numbers import ctn_hash
    from tests.campaign_factories import add_recipients, make_campaign
    from tests.factories import make_user, make_workspace

    ws = make_workspace("keyed")
    campaign = make_campaign(ws, make_user("keyed@example.com", workspace=ws, role="author"), name="k")
    add_recipients(campaign, ["491701234567"])
    ws_id = ws.id
    db.session.remove()
    app.config["CTN_HASH_KEY"] = "a separate hash key"
    try:
        downgrade(revision="0007")
        upgrade()
        stored = db.session.execute(text("SELECT ctn_hash FROM recipients")).scalar()
        assert stored == ctn_hash("491701234567", ws_id)
        app.config["CTN_HASH_KEY"] = app.config["SECRET_KEY"]
        assert stored != ctn_hash("491701234567", ws_id)
    finally:
        db.session.remove()
        upgrade()


def test_0008_dispatch_under_faults_upgrades_and_downgrades_with_data(app):
    """0008 adds failure/pause reasons, per-recipient resubmission, dispatch_states and
    pending_reports; down to 0007 and back keeps campaigns, recipients and the delete trigger."""
    from models import DispatchState, PendingReport, utcnow
    from tests.campaign_factories import add_recipients, make_campaign
    from tests.factories import make_user, make_workspace

    ws = make_workspace("faults")
    author = make_user("faults@example.com", workspace=ws, role="author")
    campaign = make_campaign(ws, author, name="paused by the breaker", status="Sending", moderation="approved",
                             pause_reason="ESME_RSUBMITFAIL for the last 500 messages")
    add_recipients(campaign, ["491700000001", "491700000002"])
    db.session.commit()
    rid = db.session.execute(text("SELECT min(id) FROM recipients")).scalar()
    db.session.execute(text("UPDATE recipients SET attempts = 2, state = 'sent' WHERE id = :r"), {"r": rid})
    db.session.add(DispatchState(campaign_id=campaign.id, backoff_step=3, refusals=1, rejection_streak=7,
                                 trouble="throttled", backoff_until=utcnow()))
    db.session.add(PendingReport(recipient_id=rid, status="DELIVRD", done_at=utcnow(), received_at=utcnow()))
    db.session.commit()
    campaign_id = campaign.id
    db.session.remove()
    try:
        downgrade(revision="0007")
        tables = set(inspect(db.engine).get_table_names())
        assert not {"dispatch_states", "pending_reports"} & tables
        assert "pause_reason" not in {c["name"] for c in inspect(db.engine).get_columns("campaigns")}
        assert "attempts" not in {c["name"] for c in inspect(db.engine).get_columns("recipients")}
        assert db.session.execute(text("SELECT name FROM campaigns WHERE id = :c"), {"c": campaign_id}).scalar() \
            == "paused by the breaker"
        assert db.session.execute(text("SELECT count(*) FROM recipients")).scalar() == 2
        db.session.remove()
        upgrade()
        row = db.session.execute(text("SELECT pause_reason, failure_reason FROM campaigns WHERE id = :c"),
                                 {"c": campaign_id}).one()
        assert row == (None, None)
        assert db.session.execute(text("SELECT attempts FROM recipients WHERE id = :r"), {"r": rid}).scalar() is None
        db.session.execute(text("DELETE FROM campaigns WHERE id = :c"), {"c": campaign_id})  # trigger survived
        db.session.commit()
        assert db.session.execute(text("SELECT count(*) FROM recipients")).scalar() == 0
    finally:
        db.session.remove()
        upgrade()


def test_0015_settings_and_quotas_upgrade_and_downgrade_with_data(app):
    """0015 adds system_settings, the two workspace quota columns and the daily_sent day index; down
    to 0008 and back keeps workspaces, their members and campaigns (no table is re-created)."""
    from models import SystemSetting, utcnow
    from services import quotas
    from tests.campaign_factories import make_campaign
    from tests.factories import make_user, make_workspace

    ws = make_workspace("quota")
    author = make_user("quota@example.com", workspace=ws, role="admin")
    make_campaign(ws, author, name="kept")
    quotas.set_quota("quota", daily_messages=100, max_recipients_per_campaign=5)
    db.session.add(SystemSetting(key="LOCKOUT_SECONDS", value="90", updated_at=utcnow(), updated_by=author.id))
    db.session.commit()
    db.session.remove()
    try:
        downgrade(revision="0008")
        assert "system_settings" not in inspect(db.engine).get_table_names()
        assert "quota_daily_messages" not in {c["name"] for c in inspect(db.engine).get_columns("workspaces")}
        assert db.session.execute(text("SELECT count(*) FROM memberships m JOIN workspaces w "
                                       "ON w.id = m.workspace_id WHERE w.slug = 'quota'")).scalar() == 1
        assert db.session.execute(text("SELECT name FROM campaigns")).scalar() == "kept"
        db.session.remove()
        upgrade()
        row = db.session.execute(text("SELECT quota_daily_messages, quota_max_recipients FROM workspaces "
                                      "WHERE slug = 'quota'")).one()
        assert tuple(row) == (None, None)
        assert db.session.execute(text("SELECT count(*) FROM system_settings")).scalar() == 0
        assert "ix_daily_sent_day" in {i["name"] for i in inspect(db.engine).get_indexes("daily_sent")}
    finally:
        db.session.remove()
        upgrade()
