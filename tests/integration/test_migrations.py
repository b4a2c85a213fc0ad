"""Migrations: one head, and every revision upgrades and downgrades with data in the tables."""
import os

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
