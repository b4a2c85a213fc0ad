"""The JSON API: bearer tokens (shown once, stored hashed, revocable), /api/v1/me, the audit feed
with cursor pages and filters, JSON errors with a code, and an OpenAPI document that covers
every /api/v1 route of the URL map."""
import hashlib
import html
import re

import pytest
from sqlalchemy import text

from extensions import db
from models import ApiToken
from services import accounts, members, tokens
from tests.factories import PASSWORD, make_user, make_workspace


def page(response):
    return html.unescape(response.get_data(as_text=True))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("boss@example.com", workspace=ws, role="admin")
    make_user("alice@example.com", workspace=ws, role="author", is_moderator=True)
    return ws


def token_for(email, workspace, name="ci"):
    _, token = tokens.create_token(accounts.find_user(email), workspace, name)
    return token


# --- identity and token checks ------------------------------------------------------------------

def test_me_answers_with_the_token_owner_and_role(client, acme):
    token = token_for("alice@example.com", acme)

    response = client.get("/api/v1/me", headers=bearer(token))

    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == "alice@example.com"
    assert body["workspace"] == {"id": acme.id, "slug": "acme", "name": "Acme Ltd"}
    assert body["role"] == "author" and body["is_moderator"] is True and body["can_view_numbers"] is False
    db.session.expire_all()
    assert db.session.execute(db.select(ApiToken)).scalar_one().last_used_at is not None


def test_missing_or_wrong_token_is_401_json(client, acme):
    token = token_for("boss@example.com", acme)
    for headers in ({}, {"Authorization": "Bearer mc_not-a-token"}, {"Authorization": f"Basic {token}"},
                    {"Authorization": "Bearer "}, {"Authorization": f"Bearer {token[:-1]}"}):
        response = client.get("/api/v1/me", headers=headers)

        assert response.status_code == 401, headers
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_revoked_token_is_401(client, acme):
    row, token = tokens.create_token(accounts.find_user("boss@example.com"), acme, "ci")
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200

    tokens.revoke(accounts.find_user("boss@example.com"), acme, row.id)

    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_revoked"


def test_token_of_a_removed_member_is_refused(client, acme):
    token = token_for("alice@example.com", acme)
    alice = accounts.find_user("alice@example.com")
    members.remove_member(acme, alice.membership_in(acme.id).id)

    response = client.get("/api/v1/me", headers=bearer(token))

    assert response.status_code == 401  # removal revoked the token (services/tokens.py)
    assert response.get_json()["error"]["code"] == "token_revoked"


def test_api_ignores_the_browser_session(client, acme):
    client.login("boss@example.com")

    assert client.get("/api/v1/me").status_code == 401


# --- the audit feed -----------------------------------------------------------------------------

@pytest.fixture
def busy_acme(acme):
    """Acme with a dozen audit events by two actors, plus a neighbour workspace with its own."""
    boss, alice = accounts.find_user("boss@example.com"), accounts.find_user("alice@example.com")
    for i in range(5):
        tokens.create_token(boss, acme, f"boss-{i}")
    for i in range(4):
        tokens.create_token(alice, acme, f"alice-{i}")
    membership = alice.membership_in(acme.id)
    members.change_member(acme, membership.id, role="author", is_moderator=False, can_view_numbers=True)
    members.change_member(acme, membership.id, role="moderator", is_moderator=False, can_view_numbers=True)
    globex = make_workspace("globex", "Globex")
    make_user("gina@example.com", workspace=globex, role="admin")
    tokens.create_token(accounts.find_user("gina@example.com"), globex, "neighbour")
    return acme


def feed(client, token, **params):
    response = client.get("/api/v1/audit", headers=bearer(token), query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_audit_feed_pages_with_a_cursor_without_overlap(client, busy_acme, audit_events):
    token = token_for("boss@example.com", busy_acme, "siem")
    expected = [e["_id"] for e in audit_events() if e["workspace_id"] == busy_acme.id]
    assert len(expected) >= 12

    seen, cursor, pages = [], None, 0
    while True:
        body = feed(client, token, limit=5, **({"cursor": cursor} if cursor else {}))
        assert len(body["events"]) <= 5
        seen += [e["id"] for e in body["events"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None or pages > len(expected):  # a cursor that does not advance must not hang the suite
            break

    assert len(seen) == len(set(seen)), "pages overlap"
    assert seen == expected  # newest first, nothing skipped, nothing of Globex
    assert pages == -(-len(expected) // 5)
    timestamps = [e["ts"] for e in feed(client, token, limit=500)["events"]]
    assert timestamps == sorted(timestamps, reverse=True)
    assert all(t.endswith("Z") and len(t) == len("2026-01-01T00:00:00.000Z") for t in timestamps)


def test_audit_feed_filters_by_action_prefix_and_actor(client, busy_acme):
    token = token_for("boss@example.com", busy_acme, "siem")

    changes = feed(client, token, action="members.")["events"]
    by_alice = feed(client, token, actor="ALICE@")["events"]

    assert [e["action"] for e in changes] == ["members.changed", "members.changed"]
    assert changes[0]["before"]["role"] == "author" and changes[0]["after"]["role"] == "moderator"
    assert len(by_alice) == 4
    assert {(e["action"], e["actor_email"]) for e in by_alice} == {("tokens.created", "alice@example.com")}
    assert feed(client, token, action="tokens.", actor="boss")["events"][0]["after"]["name"] == "siem"


def test_audit_feed_is_for_admins_only(client, busy_acme):
    token = token_for("alice@example.com", busy_acme)

    response = client.get("/api/v1/audit", headers=bearer(token))

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert "events" not in response.get_json()


@pytest.mark.parametrize("params, code", [
    ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ({"cursor": "W10"}, "invalid_cursor"),  # base64 of "[]"
    ({"limit": "many"}, "invalid_limit"),
    ({"since": "yesterday"}, "invalid_date"),
])
def test_bad_audit_parameters_are_400_json(client, acme, params, code):
    token = token_for("boss@example.com", acme, "siem")

    response = client.get("/api/v1/audit", headers=bearer(token), query_string=params)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


# --- the OpenAPI document -----------------------------------------------------------------------

VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def api_rules(app):
    """(OpenAPI path, regex, methods) for every /api/v1 rule: `<int:x>` becomes `{x}`; in the regex a
    variable matches one path segment, so a rule like `/campaigns/<int:id>/<action>` is described
    by either `/campaigns/{id}/{action}` or one path per documented action."""
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = VARIABLE.sub(r"{\1}", rule.rule)
            pattern = re.compile("^" + "/".join("[^/]+" if VARIABLE.fullmatch(part) else re.escape(part)
                                                for part in rule.rule.split("/")) + "$")
            yield path, pattern, rule.methods - {"HEAD", "OPTIONS"}


def test_openapi_describes_every_api_route(client, app):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]

    missing = [f"{method} {path}"
               for path, pattern, methods in api_rules(app) for method in sorted(methods)
               if not any(method.lower() in ops for doc, ops in paths.items()
                          if doc == path or pattern.match(doc))]

    assert missing == []
    assert {"/api/v1/me", "/api/v1/audit", "/api/v1/openapi.json"} <= set(paths)


def test_openapi_lists_no_route_that_does_not_exist(client, app):
    spec_paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    rules = list(api_rules(app))

    invented = [f"{method.upper()} {doc}" for doc, ops in spec_paths.items() for method in ops
                if not any(pattern.match(doc) and method.upper() in methods for _, pattern, methods in rules)]

    assert invented == []


# --- the tokens page ----------------------------------------------------------------------------

def test_tokens_page_shows_a_new_token_once_and_then_only_its_prefix(client, acme, audit_events):
    client.login("alice@example.com")

    response = client.post("/w/acme/tokens", data={"name": "billing OTP service", "password": PASSWORD})

    assert response.status_code == 200
    token = re.search(r'<code class="token" id="new-token">([^<]+)</code>', page(response)).group(1)
    assert "it is shown only once" in page(response)
    assert client.get("/api/v1/me", headers=bearer(token)).get_json()["email"] == "alice@example.com"

    listing = page(client.get("/w/acme/tokens"))
    assert token not in listing
    assert f"<code>{token[:10]}…</code>" in listing and "billing OTP service" in listing
    row = db.session.execute(db.select(ApiToken)).scalar_one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with db.engine.connect() as conn:
        raw = conn.execute(text("SELECT * FROM api_tokens")).mappings().one()
    assert not any(token in str(v) for v in raw.values())
    event = audit_events(action="tokens.created")[0]
    assert event["actor_email"] == "alice@example.com" and event["workspace_id"] == acme.id
    assert event["after"]["name"] == "billing OTP service" and event["after"]["prefix"] == token[:10]
    assert event["after"]["days"] == 90


def test_revoking_on_the_tokens_page_stops_the_token(client, acme, audit_events):
    client.login("alice@example.com")
    created = client.post("/w/acme/tokens", data={"name": "ci", "password": PASSWORD})
    token = re.search(r'id="new-token">([^<]+)<', page(created)).group(1)
    row = db.session.execute(db.select(ApiToken)).scalar_one()

    response = client.post(f"/w/acme/tokens/{row.id}/revoke")

    assert response.status_code == 302
    listing = page(client.get("/w/acme/tokens"))
    assert "Token revoked; programs using it are refused from now on." in listing
    assert "badge-revoked" in listing
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    event = audit_events(action="tokens.revoked")[0]
    assert event["actor_email"] == "alice@example.com" and event["object_id"] == str(row.id)
    assert event["before"] == {"revoked": False} and event["after"]["revoked"] is True
    assert event["after"]["reason"] == "owner"


def test_nobody_revokes_someone_elses_token(client, acme, audit_events):
    row, token = tokens.create_token(accounts.find_user("alice@example.com"), acme, "alice's")
    client.login("boss@example.com")

    client.post(f"/w/acme/tokens/{row.id}/revoke")

    assert "This token does not exist." in page(client.get("/w/acme/tokens"))
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert audit_events(action="tokens.revoked") == []


def test_a_token_needs_a_name(client, acme):
    client.login("alice@example.com")

    response = client.post("/w/acme/tokens", data={"name": ""})

    assert 'id="new-token"' not in page(response)
    assert db.session.execute(db.select(ApiToken)).first() is None
