"""GDPR mode: finished campaigns past the retention lose their numbers (hash + masked tail stay),
in batches, idempotently, audited; running and recent campaigns are untouched; enabling it from the
settings page says it is irreversible."""
from datetime import timedelta

from extensions import db
from jobs.gdpr import anonymise_numbers
from models import AnonymisedCampaign, JobError, Recipient, utcnow
from services import gdpr
from services.numbers import ctn_hash, mask_number
from tests.campaign_factories import make_campaign
from tests.factories import make_user, make_workspace


def world(retention=30):
    ws = make_workspace("ops")
    admin = make_user("admin@example.com", workspace=ws, role="admin")
    gdpr.enable(ws, admin, retention)
    return ws, admin


def numbers_of(campaign):
    return sorted(db.session.execute(db.select(Recipient.number).filter_by(campaign_id=campaign.id)).scalars())


def test_gdpr_mode_anonymises_an_old_finished_campaign_and_keeps_counters_and_hashes(app, audit_events):
    ws, admin = world()
    old = make_campaign(ws, admin, status="Done", moderation="approved", recipients=25,
                        finished_at=utcnow() - timedelta(days=31), delivered_count=20)
    db.session.add(JobError(campaign_id=old.id, line_no=3, reason="too short", raw="49170 12"))
    db.session.commit()
    before = {r.id: (r.number, r.ctn_hash) for r in db.session.execute(
        db.select(Recipient).filter_by(campaign_id=old.id)).scalars()}
    app.config["GDPR_BATCH_SIZE"] = 7  # several batches

    assert gdpr.anonymise_due() == 1
    db.session.expire_all()
    for row in db.session.execute(db.select(Recipient).filter_by(campaign_id=old.id)).scalars():
        number, digest = before[row.id]
        assert row.ctn_hash == digest == ctn_hash(number, ws.id)
        assert row.number == gdpr.anonymised_number(number, digest)
        assert number not in row.number and mask_number(row.number).endswith(number[-3:])
    assert db.session.get(type(old), old.id).delivered_count == 20
    assert db.session.get(type(old), old.id).recipients_count == 25
    assert db.session.execute(db.select(JobError.raw)).scalar() is None
    event = audit_events(action="campaign.numbers_anonymised")[0]
    assert event["object_id"] == str(old.id) and event["after"]["recipients"] == 25
    assert db.session.get(AnonymisedCampaign, old.id).recipients == 25


def test_recent_running_and_other_workspaces_campaigns_are_untouched(app):
    ws, admin = world()
    other = make_workspace("other")
    other_admin = make_user("admin@other.test", workspace=other, role="admin")
    long_ago = utcnow() - timedelta(days=90)
    recent = make_campaign(ws, admin, status="Done", moderation="approved", recipients=3,
                           finished_at=utcnow() - timedelta(days=5))
    running = make_campaign(ws, admin, status="Sending", moderation="approved", recipients=3, finished_at=long_ago)
    foreign = make_campaign(other, other_admin, status="Done", moderation="approved", recipients=3,
                            finished_at=long_ago)
    snapshot = {c.id: numbers_of(c) for c in (recent, running, foreign)}
    assert gdpr.anonymise_due() == 0
    db.session.expire_all()
    assert {c.id: numbers_of(c) for c in (recent, running, foreign)} == snapshot


def test_every_finished_status_is_anonymised_and_installation_mode_covers_every_workspace(app):
    app.config["GDPR_MODE"] = True
    app.config["GDPR_RETENTION_DAYS"] = 10
    ws = make_workspace("ops")
    admin = make_user("admin@example.com", workspace=ws, role="admin")
    long_ago = utcnow() - timedelta(days=11)
    campaigns = [make_campaign(ws, admin, status=s, moderation="approved", recipients=2, finished_at=long_ago)
                 for s in ("Done", "Cancelled", "Failed", "Expired")]
    assert gdpr.anonymise_due() == 4
    db.session.expire_all()
    assert all(gdpr.is_anonymised(n) for c in campaigns for n in numbers_of(c))


def test_the_job_is_idempotent_and_resumes_after_a_partial_run(app, audit_events):
    ws, admin = world()
    old = make_campaign(ws, admin, status="Done", moderation="approved", recipients=10,
                        finished_at=utcnow() - timedelta(days=40))
    # A crash after the first batch: some rows rewritten, the campaign not yet recorded.
    app.config["GDPR_BATCH_SIZE"] = 4
    rewritten, finished = gdpr.anonymise_campaign(old.id, deadline=0)
    assert (rewritten, finished) == (4, False)
    assert anonymise_numbers() == 1  # the periodic job finishes it
    first = numbers_of(old)
    assert anonymise_numbers() == 0  # and a second run changes nothing
    db.session.expire_all()
    assert numbers_of(old) == first and all(gdpr.is_anonymised(n) for n in first)
    assert len(audit_events(action="campaign.numbers_anonymised")) == 1


def test_settings_page_warns_that_it_is_irreversible_and_enabling_is_audited(client, audit_events):
    ws = make_workspace("ops")
    make_user("admin@example.com", workspace=ws, role="admin")
    client.login("admin@example.com")
    page = client.get(f"/w/{ws.slug}/settings").get_data(as_text=True)
    assert "This is irreversible" in page and "cannot be turned off" in page
    refused = client.post(f"/w/{ws.slug}/settings/gdpr", data={"retention_days": "30"})  # not confirmed
    assert refused.status_code == 302
    assert gdpr.settings_for(ws)["enabled"] is False
    done = client.post(f"/w/{ws.slug}/settings/gdpr", data={"retention_days": "45", "confirm": "y"})
    assert done.status_code == 302
    assert gdpr.settings_for(ws) | {"enabled_at": None} == {"enabled": True, "retention_days": 45,
                                                              "enabled_at": None, "source": "workspace"}
    assert audit_events(action="workspace.gdpr_enabled")[0]["after"] == {"retention_days": 45}
    page = client.get(f"/w/{ws.slug}/settings").get_data(as_text=True)
    assert "GDPR mode is <strong>on</strong>" in page and "Turn on GDPR mode" not in page


def test_only_admins_may_enable_gdpr_mode(client):
    ws = make_workspace("ops")
    make_user("author@example.com", workspace=ws)
    client.login("author@example.com")
    assert client.post(f"/w/{ws.slug}/settings/gdpr", data={"retention_days": "30", "confirm": "y"}).status_code == 403
    assert gdpr.settings_for(ws)["enabled"] is False

