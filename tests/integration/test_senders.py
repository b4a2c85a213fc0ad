"""Sender-name pages and API: proposing a name and a changed SADDR, reading the history and the
moderator's note, archiving, validation messages, permissions and tenant isolation."""
import contextvars
import html

import pytest
from argon2 import PasswordHasher

from extensions import db
from models import SenderName, SenderRevision
from services import senders, tokens
from tests.conftest import CSRF_RE, BrowserLikeClient
from tests.factories import make_user, make_workspace


class Browser(BrowserLikeClient):
    """Each request in its own application context (as in production), so signing in as another
    user is not masked by `g` cached in the test's app context."""

    def open(self, *args, **kwargs):
        return contextvars.Context().run(super().open, *args, **kwargs)

    def login(self, email, *args, **kwargs):
        if self.csrf_token:  # switching users: sign the previous one out first
            self.post("/logout")
            self.csrf_token = None
        return super().login(email, *args, **kwargs)

    def refresh_csrf(self):
        body = self.get("/login", follow_redirects=True).get_data(as_text=True)
        match = CSRF_RE.search(body)
        self.csrf_token = match.group(1) if match else None
        return self.csrf_token


@pytest.fixture
def client(app):
    return Browser(app, app.response_class, use_cookies=True)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    from services import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("author@acme.test", workspace=ws, role="author")
    make_user("mod@acme.test", workspace=ws, role="moderator")
    make_user("admin@acme.test", workspace=ws, role="admin")
    return ws


def page(response):
    return html.unescape(response.get_data(as_text=True))


def user(email):
    from services import accounts

    return accounts.find_user(email)


def revisions():
    db.session.expire_all()
    return list(db.session.execute(db.select(SenderRevision).order_by(SenderRevision.id)).scalars())


def propose_page(client, **fields):
    data = {"name": "Acme", "saddr": "ACME", "ton": "", "npi": "", "comment": "Our brand", "submit": "1"}
    data.update(fields)
    return client.post("/w/acme/senders", data=data)


def test_the_sender_names_page_lists_names_and_offers_the_proposal_form(client, acme):
    client.login("author@acme.test")
    body = page(client.get("/w/acme/senders"))
    assert "Sender names" in body and "No sender names yet" in body
    assert 'name="saddr"' in body and "Submit for approval" in body and "Save as draft" in body
    assert '<label for="saddr">SADDR</label>' in body


def test_an_author_proposes_a_name_and_sees_it_waiting(client, acme, audit_events):
    client.login("author@acme.test")
    response = propose_page(client)
    assert response.status_code == 302
    [revision] = revisions()
    assert response.headers["Location"].endswith(f"/w/acme/senders/{revision.sender_id}")
    assert (revision.state, revision.saddr, revision.ton, revision.npi, revision.comment) == \
        ("pending", "ACME", 5, 0, "Our brand")

    detail = page(client.get(response.headers["Location"]))
    assert "revision #1 is waiting for a moderator" in detail
    assert "No approved revision yet" in detail and "badge-pending" in detail
    listing = page(client.get("/w/acme/senders"))
    assert "Acme" in listing and "not approved yet" in listing
    assert audit_events(action="senders.proposed")[0]["actor_email"] == "author@acme.test"


def test_an_invalid_saddr_is_explained_next_to_the_field_and_nothing_is_stored(client, acme):
    client.login("author@acme.test")
    response = propose_page(client, saddr="ACME-CORPORATE")
    assert response.status_code == 422
    body = page(response)
    assert "An alphanumeric SADDR has at most 11 characters (this one has 14)." in body
    assert 'aria-invalid="true"' in body and 'value="ACME-CORPORATE"' in body
    assert revisions() == []

    response = propose_page(client, saddr="")
    assert response.status_code == 422
    assert "Enter the sender address (SADDR)." in page(response)


def test_a_draft_is_saved_and_submitted_later(client, acme):
    client.login("author@acme.test")
    response = propose_page(client, submit="", save_draft="1")
    [draft] = revisions()
    assert draft.state == "draft"
    detail = page(client.get(response.headers["Location"]))
    assert "as a draft" in detail and "badge-draft" in detail
    response = client.post(f"/w/acme/senders/revisions/{draft.id}/submit")
    assert response.status_code == 302
    assert revisions()[0].state == "pending"
    assert "now waiting for a moderator" in page(client.get(response.headers["Location"]))


def test_a_changed_saddr_is_a_new_revision_and_the_history_shows_both(client, acme):
    first = senders.propose(acme, user("author@acme.test").membership_in(acme.id), user("author@acme.test"),
                            label="Acme", saddr="ACME")
    mod = user("mod@acme.test")
    senders.approve(acme, first.id, mod.membership_in(acme.id), mod)

    client.login("author@acme.test")
    detail = page(client.get(f"/w/acme/senders/{first.sender_id}"))
    assert "Current approved revision" in detail and "ACME" in detail and "becomes revision #2" in detail
    response = client.post(f"/w/acme/senders/{first.sender_id}/revisions",
                           data={"saddr": "ACMEPAY", "ton": "5", "npi": "0", "comment": "rebrand", "submit": "1"})
    assert response.status_code == 302
    one, two = revisions()
    assert (one.number, one.saddr, one.state) == (1, "ACME", "approved")
    assert (two.number, two.saddr, two.state) == (2, "ACMEPAY", "pending")
    detail = page(client.get(response.headers["Location"]))
    assert "Proposed revision #2 (ACMEPAY)" in detail
    assert 'id="revision-1"' in detail and 'id="revision-2"' in detail
    assert "Revision #2 (<code>ACMEPAY</code>) is waiting for a moderator" in detail  # no second open revision

    # A second change while #2 waits is refused with what to do.
    response = client.post(f"/w/acme/senders/{first.sender_id}/revisions", data={"saddr": "ACMEX", "submit": "1"})
    assert response.status_code == 409
    assert "withdraw it or wait for the decision" in page(response)
    assert len(revisions()) == 2


def test_the_author_reads_the_moderators_note_on_the_sender_page(client, acme):
    author = user("author@acme.test")
    revision = senders.propose(acme, author.membership_in(acme.id), author, label="Acme", saddr="ACME")
    mod = user("mod@acme.test")
    senders.reject(acme, revision.id, mod.membership_in(acme.id), mod, "ACME is registered to another client.")

    client.login("author@acme.test")
    body = page(client.get(f"/w/acme/senders/{revision.sender_id}"))
    assert "Revision #1 (<code>ACME</code>) was rejected" in body
    assert "mod@acme.test rejected it" in body
    assert "ACME is registered to another client." in body
    assert "Correct it and propose a new revision below." in body


def test_only_admins_archive_and_archived_names_move_to_their_own_list(client, acme, audit_events):
    author = user("author@acme.test")
    revision = senders.propose(acme, author.membership_in(acme.id), author, label="Acme", saddr="ACME")
    url = f"/w/acme/senders/{revision.sender_id}"

    client.login("author@acme.test")
    assert "Archive sender name" not in page(client.get(url))
    assert client.post(f"{url}/archive").status_code == 403

    client.login("admin@acme.test")
    assert "Archive sender name" in page(client.get(url))
    response = client.post(f"{url}/archive")
    assert response.status_code == 302
    body = page(client.get(url))
    assert "new campaigns can no longer choose it" in body and "Propose a change" not in body
    listing = page(client.get("/w/acme/senders"))
    assert "Archived" in listing and "No sender names yet" in listing
    assert db.session.get(SenderName, revision.sender_id).archived_at is not None
    assert audit_events(action="senders.archived")[0]["actor_email"] == "admin@acme.test"


def test_another_workspaces_sender_name_is_not_found(client, acme):
    other = make_workspace("globex")
    stranger = make_user("x@globex.test", workspace=other, role="admin")
    theirs = senders.propose(other, stranger.membership_in(other.id), stranger, label="Globex", saddr="GLOBEX")

    client.login("admin@acme.test")
    assert client.get(f"/w/acme/senders/{theirs.sender_id}").status_code == 404
    assert client.post(f"/w/acme/senders/{theirs.sender_id}/archive").status_code == 404
    assert client.post(f"/w/acme/senders/{theirs.sender_id}/revisions", data={"saddr": "X1"}).status_code == 404
    assert client.post(f"/w/acme/senders/revisions/{theirs.id}/withdraw").status_code == 404
    assert client.get(f"/w/globex/senders/{theirs.sender_id}").status_code == 404
    assert revisions()[0].state == "pending" and db.session.get(SenderName, theirs.sender_id).archived_at is None


def test_signed_out_visitors_are_sent_to_sign_in(client, acme):
    response = client.get("/w/acme/senders")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- API -------------------------------------------------------------------------------------------

def bearer(email, ws):
    _, token = tokens.create_token(user(email), ws, "test")
    return {"Authorization": f"Bearer {token}"}


def test_api_proposes_a_name_then_a_revision_and_reads_them_back(client, acme, audit_events):
    auth = bearer("author@acme.test", acme)
    response = client.post("/api/v1/sender-names", headers=auth,
                           json={"name": "Acme", "saddr": "ACME", "ston": 5, "snpi": 0, "comment": "brand"})
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["name"] == "Acme" and created["workspace_id"] == acme.id
    [first] = created["revisions"]
    assert {k: first[k] for k in ("number", "saddr", "ston", "snpi", "comment", "state", "note")} == \
        {"number": 1, "saddr": "ACME", "ston": 5, "snpi": 0, "comment": "brand", "state": "pending", "note": None}
    assert created["current_revision"] is None and created["open_revision"]["id"] == first["id"]

    mod = user("mod@acme.test")
    senders.approve(acme, first["id"], mod.membership_in(acme.id), mod)
    response = client.post(f"/api/v1/sender-names/{created['id']}/revisions", headers=auth,
                           json={"saddr": 4915112345678})
    assert response.status_code == 201, response.get_json()
    second = response.get_json()
    assert (second["number"], second["saddr"], second["ston"], second["snpi"], second["state"]) == \
        (2, "4915112345678", 1, 1, "pending")

    one = client.get(f"/api/v1/sender-names/{created['id']}", headers=auth).get_json()
    assert [(r["number"], r["state"]) for r in one["revisions"]] == [(1, "approved"), (2, "pending")]
    assert one["current_revision"]["saddr"] == "ACME"
    listed = client.get("/api/v1/sender-names", headers=auth).get_json()["sender_names"]
    assert [s["id"] for s in listed] == [created["id"]]
    assert {e["action"] for e in audit_events(action="senders.")} >= {"senders.proposed",
                                                                      "senders.revision_proposed"}


def test_api_errors_carry_a_code_and_a_message(client, acme):
    auth = bearer("author@acme.test", acme)
    response = client.post("/api/v1/sender-names", headers=auth, json={"name": "Acme", "saddr": "ACME-CORPORATE"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_saddr"
    assert "at most 11 characters" in response.get_json()["error"]["message"]
    response = client.post("/api/v1/sender-names", headers=auth, json={"name": "Acme", "saddr": "ACME", "ston": 9})
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_ton")
    response = client.post("/api/v1/sender-names", headers=auth, data="not json")
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_json")
    assert client.post("/api/v1/sender-names", headers=auth, json={"name": "Acme", "saddr": "ACME"}).status_code == 201
    response = client.post("/api/v1/sender-names", headers=auth, json={"name": "acme", "saddr": "ACME"})
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "duplicate_name")
    assert client.get("/api/v1/sender-names/999999", headers=auth).status_code == 404


def test_api_archive_is_for_admins_and_archived_names_are_listed_apart(client, acme):
    author = bearer("author@acme.test", acme)
    created = client.post("/api/v1/sender-names", headers=author, json={"name": "Acme", "saddr": "ACME"}).get_json()
    response = client.post(f"/api/v1/sender-names/{created['id']}/archive", headers=author)
    assert (response.status_code, response.get_json()["error"]["code"]) == (403, "forbidden")

    admin = bearer("admin@acme.test", acme)
    response = client.post(f"/api/v1/sender-names/{created['id']}/archive", headers=admin)
    assert response.status_code == 200 and response.get_json()["archived"] is True
    assert response.get_json()["revisions"][0]["state"] == "archived"
    assert client.get("/api/v1/sender-names", headers=admin).get_json()["sender_names"] == []
    archived = client.get("/api/v1/sender-names?archived=1", headers=admin).get_json()["sender_names"]
    assert [s["id"] for s in archived] == [created["id"]]
    response = client.post(f"/api/v1/sender-names/{created['id']}/revisions", headers=author, json={"saddr": "NEW"})
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "archived")


def test_api_token_of_another_workspace_cannot_reach_these_names(client, acme):
    author = bearer("author@acme.test", acme)
    created = client.post("/api/v1/sender-names", headers=author, json={"name": "Acme", "saddr": "ACME"}).get_json()
    other = make_workspace("globex")
    make_user("admin@globex.test", workspace=other, role="admin")
    theirs = bearer("admin@globex.test", other)
    assert client.get(f"/api/v1/sender-names/{created['id']}", headers=theirs).status_code == 404
    assert client.post(f"/api/v1/sender-names/{created['id']}/archive", headers=theirs).status_code == 404
    assert client.get("/api/v1/sender-names", headers=theirs).get_json()["sender_names"] == []


def test_the_openapi_document_describes_the_sender_routes(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/sender-names"])
    for path in ("/api/v1/sender-names/{sender_id}", "/api/v1/sender-names/{sender_id}/revisions",
                 "/api/v1/sender-names/{sender_id}/archive", "/api/v1/moderation",
                 "/api/v1/moderation/{kind}/{item_id}/approve", "/api/v1/moderation/{kind}/{item_id}/reject"):
        assert path in paths, path
