"""Two moderators click Approve at the same moment: two real concurrent HTTP requests against a
threaded server on PostgreSQL. The conditional UPDATE lets exactly one win; the other sees who
decided first, and nothing is approved twice."""
import re
import threading

import pytest
import requests
from argon2 import PasswordHasher
from werkzeug.serving import make_server

from extensions import db
from models import Campaign, SenderRevision, utcnow
from services import senders
from tests.factories import PASSWORD, make_user, make_workspace

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
pytestmark = pytest.mark.postgres_only


@pytest.fixture(autouse=True)
def postgres_only():
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the race needs PostgreSQL (row locks under concurrent UPDATEs)")


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    from services import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


@pytest.fixture
def server(app):
    """The app served by a real threaded HTTP server on a free port."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=5)


def signed_in(base, email):
    """A requests session signed in as `email`, with the CSRF token of its session."""
    session = requests.Session()
    token = CSRF_RE.search(session.get(f"{base}/login", timeout=10).text).group(1)
    response = session.post(f"{base}/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                            timeout=10, allow_redirects=False)
    assert response.status_code == 302, f"sign-in of {email} failed"
    page = session.get(f"{base}/w/acme/moderation", timeout=10)
    assert page.status_code == 200
    session.csrf_token = CSRF_RE.search(page.text).group(1)
    return session


def race(sessions, url, data=None):
    """Fire one POST per session at the same instant; returns the final pages' texts."""
    barrier = threading.Barrier(len(sessions))
    results = [None] * len(sessions)

    def click(index, session):
        barrier.wait()
        response = session.post(url, data={"csrf_token": session.csrf_token, **(data or {})}, timeout=30)
        results[index] = (response.status_code, response.text)

    threads = [threading.Thread(target=click, args=(i, s)) for i, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("author@acme.test", workspace=ws, role="author")
    make_user("mod1@acme.test", workspace=ws, role="moderator")
    make_user("mod2@acme.test", workspace=ws, role="moderator")
    return ws


def _author(ws):
    from services import accounts

    author = accounts.find_user("author@acme.test")
    return author, author.membership_in(ws.id)


@pytest.mark.parametrize("attempt", range(3))
def test_two_moderators_approving_one_revision_at_once_make_one_approval(server, acme, audit_events, attempt):
    author, membership = _author(acme)
    revision = senders.propose(acme, membership, author, label="Acme", saddr="ACME")
    mods = [signed_in(server, "mod1@acme.test"), signed_in(server, "mod2@acme.test")]

    results = race(mods, f"{server}/w/acme/moderation/sender-revisions/{revision.id}/approve")

    assert all(status == 200 for status, _ in results), [status for status, _ in results]
    texts = [text.replace("&#34;", '"').replace("&#39;", "'") for _, text in results]
    won = [t for t in texts if "Approved revision #1 of" in t]
    lost = [t for t in texts if "Revision #1 was already approved by" in t]
    assert len(won) == 1 and len(lost) == 1, texts
    db.session.expire_all()
    stored = db.session.get(SenderRevision, revision.id)
    assert stored.state == "approved"
    winner = re.search(r"already approved by (\S+) at", lost[0]).group(1)
    assert stored.decided_by.email == winner
    assert len(audit_events(action="senders.revision_approved")) == 1


@pytest.mark.parametrize("second", ["approve", "reject"])
def test_two_moderators_deciding_one_campaign_at_once_make_one_decision(server, acme, audit_events, second):
    author, membership = _author(acme)
    admin = make_user("admin@acme.test", workspace=acme, role="admin")
    revision = senders.propose(acme, admin.membership_in(acme.id), admin, label="Brand", saddr="BRAND")
    mod3 = make_user("mod3@acme.test", workspace=acme, role="moderator")
    senders.approve(acme, revision.id, mod3.membership_in(acme.id), mod3)
    campaign = Campaign(workspace_id=acme.id, author_id=author.id, name="Spring sale", mode="OnDemand",
                        status="Pending", moderation="awaiting", auto_start=True, sender_revision_id=revision.id,
                        submitted_at=utcnow(), recipients_count=10, message_text="Hello")
    db.session.add(campaign)
    db.session.commit()
    mods = [signed_in(server, "mod1@acme.test"), signed_in(server, "mod2@acme.test")]
    base = f"{server}/w/acme/moderation/campaigns/{campaign.id}"
    barrier = threading.Barrier(2)
    results = {}

    def click(name, session, url, data):
        barrier.wait()
        results[name] = session.post(url, data={"csrf_token": session.csrf_token, **data}, timeout=30).text

    threads = [threading.Thread(target=click, args=("mod1", mods[0], f"{base}/approve", {})),
               threading.Thread(target=click, args=("mod2", mods[1], f"{base}/{second}", {"note": "No opt-out."}))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    db.session.expire_all()
    stored = db.session.get(Campaign, campaign.id)
    assert stored.moderation in ("approved", "rejected")
    assert stored.status == ("Sending" if stored.moderation == "approved" else "New")
    loser = "mod2" if stored.moderated_by.email == "mod1@acme.test" else "mod1"
    assert f"Campaign #{campaign.id} was already {stored.moderation} by {stored.moderated_by.email} at " \
        in results[loser], results[loser][-2000:]
    decisions = audit_events(action="campaigns.approve") + audit_events(action="campaigns.reject")
    assert len(decisions) == 1
