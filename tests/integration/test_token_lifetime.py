"""API tokens with a lifetime, tried as an attacker and a careless client would: expired tokens,
tokens that outlive a password change, "sign out everywhere", removal from the workspace, a role
change or an admin's revocation, a burst of parallel calls right after the password change, a
lifetime past the maximum or not a number, creation without the password, and an owner who must
enrol a second factor. Refusals are 401 JSON errors with a code and change nothing."""
import re
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import text, update
from werkzeug.serving import make_server

from extensions import db
from models import ApiToken, Membership, User, utcnow
from services import accounts, members, sessions, tokens, totp
from services.errors import DomainError
from tests.conftest import CSRF_RE
from tests.factories import PASSWORD, make_user, make_workspace

NEW_PASSWORD = "an entirely new passphrase"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def me(client, token):
    response = client.get("/api/v1/me", headers=bearer(token))
    return response.status_code, (response.get_json() or {}).get("error", {}).get("code")


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("boss@example.com", workspace=ws, role="admin")
    make_user("alice@example.com", workspace=ws, role="author")
    make_user("bob@example.com", workspace=ws, role="author")
    return ws


def user(email):
    return accounts.find_user(email)


def token_for(email, workspace, name="ci", days=None):
    return tokens.create_token(user(email), workspace, name, days=days)


def page(response):
    return response.get_data(as_text=True).replace("&#34;", '"').replace("&#39;", "'")


def token_count():
    return db.session.scalar(db.select(db.func.count(ApiToken.id)))


# --- lifetime ------------------------------------------------------------------------------------

def test_a_token_past_its_expiry_is_refused_and_nothing_is_recorded_as_used(client, acme):
    row, token = token_for("alice@example.com", acme)
    db.session.execute(update(ApiToken).where(ApiToken.id == row.id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    status, code = me(client, token)

    assert (status, code) == (401, "token_expired")
    assert db.session.get(ApiToken, row.id).last_used_at is None, "an expired token is not 'used'"
    client.login("alice@example.com")
    assert "badge-expired" in page(client.get("/w/acme/tokens"))


def test_a_token_one_minute_before_expiry_still_works(client, acme):
    row, token = token_for("alice@example.com", acme)
    db.session.execute(update(ApiToken).where(ApiToken.id == row.id).values(expires_at=utcnow() + timedelta(minutes=1)))
    db.session.commit()
    assert me(client, token) == (200, None)


def test_the_page_creates_tokens_for_the_default_or_the_chosen_days_and_shows_expiry_and_last_use(app, client, acme):
    app.config["TOKEN_DEFAULT_DAYS"] = 30
    client.login("alice@example.com")
    form = page(client.get("/w/acme/tokens"))
    assert 'name="days"' in form and 'value="30"' in form, "the default lifetime is offered"
    assert 'name="password"' in form

    default = client.post("/w/acme/tokens", data={"name": "default", "days": "", "password": PASSWORD})
    chosen = client.post("/w/acme/tokens", data={"name": "weekly", "days": " 7 ", "password": PASSWORD})

    assert default.status_code == 200 and chosen.status_code == 200
    rows = {r.name: r for r in db.session.execute(db.select(ApiToken)).scalars()}
    for name, days in (("default", 30), ("weekly", 7)):
        lifetime = rows[name].expires_at - rows[name].created_at
        assert lifetime == timedelta(days=days), (name, lifetime)
    token = re.search(r'id="new-token">([^<]+)<', page(chosen)).group(1)
    assert me(client, token) == (200, None)
    listing = page(client.get("/w/acme/tokens"))
    expires = rows["weekly"].expires_at.strftime("%Y-%m-%d %H:%M")
    assert f'{expires} UTC' in listing, "the expiry is shown"
    used = db.session.get(ApiToken, rows["weekly"].id).last_used_at
    assert used is not None and used.strftime("%Y-%m-%d %H:%M") in listing, "the last use is shown"


@pytest.mark.parametrize("days", ["366", "0", "-5", "abc", "7.5", "1e3", "٣", "99999999999999999999", "30 days"])
def test_a_lifetime_past_the_maximum_or_not_a_whole_number_is_a_form_error_and_creates_nothing(
        client, acme, audit_events, days):
    client.login("alice@example.com")

    response = client.post("/w/acme/tokens", data={"name": "x", "days": days, "password": PASSWORD})

    assert response.status_code == 400
    assert "Choose a lifetime of 1 to 365 days, as a whole number." in page(response)
    assert 'id="new-token"' not in page(response)
    assert token_count() == 0 and audit_events(action="tokens.created") == []


def test_the_maximum_is_a_setting(app, client, acme):
    app.config["TOKEN_MAX_DAYS"] = 30
    client.login("alice@example.com")
    refused = client.post("/w/acme/tokens", data={"name": "x", "days": "31", "password": PASSWORD})
    accepted = client.post("/w/acme/tokens", data={"name": "x", "days": "30", "password": PASSWORD})
    assert refused.status_code == 400 and "1 to 30 days" in page(refused)
    assert accepted.status_code == 200 and token_count() == 1


@pytest.mark.parametrize("value", [True, 3.0, "366", 0, None])
def test_the_service_refuses_wrong_types_too(acme, value):
    if value is None:  # None means the default
        row, _ = token_for("alice@example.com", acme, days=None)
        assert row.expires_at - row.created_at == timedelta(days=90)
        return
    with pytest.raises(DomainError) as refused:
        token_for("alice@example.com", acme, days=value)
    assert refused.value.code == "invalid_days" and token_count() == 0


# --- creation asks for the password --------------------------------------------------------------

@pytest.mark.parametrize("password", ["wrong password entirely", ""])
def test_creating_a_token_needs_the_password(client, acme, audit_events, password):
    client.login("alice@example.com")

    response = client.post("/w/acme/tokens", data={"name": "ci", "days": "30", "password": password})

    assert response.status_code == 400
    assert 'id="new-token"' not in page(response)
    assert token_count() == 0 and audit_events(action="tokens.created") == []
    if password:
        assert "Your current password is not correct." in page(response)
        assert password not in page(response), "the password is not echoed back"


# --- tokens die with their owner's credentials ---------------------------------------------------

def test_a_password_change_ends_every_token_of_the_owner_in_every_workspace(client, acme, audit_events):
    other = make_workspace("globex")
    members.add_member(other, user("alice@example.com"), "author")
    db.session.commit()
    _, here = token_for("alice@example.com", acme)
    _, there = token_for("alice@example.com", other)
    _, bobs = token_for("bob@example.com", acme)
    client.login("alice@example.com")

    changed = client.post("/account", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                            "confirm": NEW_PASSWORD})

    assert changed.status_code == 302
    assert me(client, here) == (401, "token_revoked")
    assert me(client, there) == (401, "token_revoked")
    assert me(client, bobs) == (200, None), "other people's tokens are not touched"
    events = audit_events(action="tokens.revoked")
    assert sorted(e["workspace_id"] for e in events) == sorted([acme.id, other.id])
    assert {e["after"]["reason"] for e in events} == {"password_changed"}
    assert "ended by a password change" in page(client.get("/w/acme/tokens"))


def test_a_refused_password_change_leaves_the_tokens_alive(client, acme):
    _, token = token_for("alice@example.com", acme)
    client.login("alice@example.com")
    client.post("/account", data={"current_password": "not my password at all", "new_password": NEW_PASSWORD,
                                  "confirm": NEW_PASSWORD})
    client.post("/account", data={"current_password": PASSWORD, "new_password": "short", "confirm": "short"})
    assert me(client, token) == (200, None)


def test_sign_out_everywhere_ends_the_tokens(client, acme, audit_events):
    _, token = token_for("alice@example.com", acme)
    client.login("alice@example.com")

    assert client.post("/account/sessions/revoke-all").status_code == 302

    assert me(client, token) == (401, "token_revoked")
    assert audit_events(action="tokens.revoked")[0]["after"]["reason"] == "signed_out_everywhere"


def test_removal_ends_the_tokens_of_that_workspace_only_and_readmission_does_not_revive_them(client, acme):
    other = make_workspace("globex")
    members.add_member(other, user("alice@example.com"), "author")
    db.session.commit()
    _, here = token_for("alice@example.com", acme)
    _, there = token_for("alice@example.com", other)

    members.remove_member(acme, user("alice@example.com").membership_in(acme.id).id)
    assert me(client, here) == (401, "token_revoked")
    assert me(client, there) == (200, None)

    members.add_member(acme, user("alice@example.com"), "author")
    db.session.commit()
    assert me(client, here) == (401, "token_revoked"), "re-admission grants no old token"


def test_a_token_older_than_its_owners_membership_is_refused(client, acme):
    """A removal that raced the token's creation (the row committed after the revocation) leaves an
    unrevoked token of an earlier membership: it is refused all the same."""
    row, token = token_for("alice@example.com", acme)
    alice = user("alice@example.com")
    db.session.execute(db.delete(Membership).where(Membership.user_id == alice.id,
                                                   Membership.workspace_id == acme.id))
    db.session.commit()
    db.session.expire_all()
    members.add_member(acme, user("alice@example.com"), "author")
    db.session.commit()
    assert db.session.get(ApiToken, row.id).revoked_at is None

    assert me(client, token) == (401, "token_revoked")


def test_a_role_change_ends_that_members_tokens_in_that_workspace(client, acme, audit_events):
    _, token = token_for("alice@example.com", acme)
    _, bobs = token_for("bob@example.com", acme)
    alice = user("alice@example.com")

    members.change_member(acme, alice.membership_in(acme.id).id, role="admin", is_moderator=False,
                          can_view_numbers=False)

    assert me(client, token) == (401, "token_revoked"), "a token never gains the new role"
    assert me(client, bobs) == (200, None)
    assert audit_events(action="tokens.revoked")[0]["after"]["reason"] == "role_changed"


def test_an_unchanged_role_keeps_the_tokens(client, acme):
    _, token = token_for("alice@example.com", acme)
    alice = user("alice@example.com")
    members.change_member(acme, alice.membership_in(acme.id).id, role="author", is_moderator=False,
                          can_view_numbers=False)
    assert me(client, token) == (200, None)


def test_a_deactivated_owner_is_refused(client, acme):
    _, token = token_for("alice@example.com", acme)
    db.session.execute(update(User).where(User.email == "alice@example.com").values(is_active_account=False))
    db.session.commit()
    assert me(client, token) == (401, "account_inactive")


# --- admins list and revoke the workspace's tokens -----------------------------------------------

def test_an_admin_lists_every_members_tokens_and_revokes_one(app, client, acme, audit_events):
    row, token = token_for("alice@example.com", acme, "billing OTP")
    token_for("bob@example.com", acme, "bob's CI")
    other = make_workspace("globex")
    make_user("gina@example.com", workspace=other, role="author")
    token_for("gina@example.com", other, "neighbour")
    client.login("boss@example.com")

    listing = page(client.get("/w/acme/tokens"))
    assert "Every token of this workspace" in listing
    assert "alice@example.com" in listing and "billing OTP" in listing and "bob's CI" in listing
    assert "neighbour" not in listing, "tokens of another workspace are not listed"

    response = client.post(f"/w/acme/tokens/{row.id}/revoke-member")

    assert response.status_code == 302
    assert me(client, token) == (401, "token_revoked")
    event = audit_events(action="tokens.revoked")[0]
    assert event["actor_email"] == "boss@example.com" and event["workspace_id"] == acme.id
    assert event["after"]["reason"] == "admin" and event["after"]["owner"] == "alice@example.com"
    assert "revoked by an admin" in page(client.get("/w/acme/tokens"))


def test_an_author_neither_sees_nor_revokes_other_members_tokens(client, acme):
    row, token = token_for("bob@example.com", acme)
    client.login("alice@example.com")

    assert "Every token of this workspace" not in page(client.get("/w/acme/tokens"))
    assert client.post(f"/w/acme/tokens/{row.id}/revoke-member").status_code == 403
    assert client.post(f"/w/acme/tokens/{row.id}/revoke").status_code == 302  # own-token route: not found
    assert me(client, token) == (200, None)


def test_an_admin_cannot_revoke_a_token_of_another_workspace(client, acme):
    other = make_workspace("globex")
    make_user("gina@example.com", workspace=other, role="author")
    row, token = token_for("gina@example.com", other)
    client.login("boss@example.com")

    assert client.post(f"/w/acme/tokens/{row.id}/revoke-member").status_code == 404
    assert client.post(f"/w/globex/tokens/{row.id}/revoke-member").status_code == 404
    assert me(client, token) == (200, None)


# --- second factor required ----------------------------------------------------------------------

def test_a_token_is_refused_while_its_owner_must_enrol_totp_and_works_again_after(app, client, acme):
    _, admin_token = token_for("boss@example.com", acme)
    _, author_token = token_for("alice@example.com", acme)
    app.config["TOTP_REQUIRED_FOR_ADMINS"] = True

    assert me(client, admin_token) == (401, "totp_enrolment_required")
    assert me(client, author_token) == (200, None), "authors are not required to enrol"

    boss = user("boss@example.com")
    secret = totp.begin_enrolment(boss)
    totp.confirm_enrolment(boss, totp.code_now(secret))
    assert me(client, admin_token) == (200, None)


def test_a_super_admins_token_is_refused_until_enrolment_too(app, client, acme):
    root = make_user("root@example.com", superadmin=True)
    _, token = tokens.create_token(root, acme, "ops")
    app.config["TOTP_REQUIRED_FOR_ADMINS"] = True
    assert me(client, token) == (401, "totp_enrolment_required")


# --- the CLI -------------------------------------------------------------------------------------

def test_cli_create_token_takes_days_and_refuses_a_bad_lifetime(app, acme):
    runner = app.test_cli_runner()
    good = runner.invoke(args=["tokens", "create", "--email", "alice@example.com", "--workspace", "acme",
                               "--days", "14"])
    assert good.exit_code == 0, good.output
    db.session.expire_all()
    row = db.session.execute(db.select(ApiToken)).scalar_one()
    assert row.expires_at - row.created_at == timedelta(days=14)
    for days in ("0", "366", "abc", "-1"):
        bad = runner.invoke(args=["tokens", "create", "--email", "alice@example.com", "--workspace", "acme",
                                  "--days", days])
        assert bad.exit_code == 1 and "Choose a lifetime of 1 to 365 days" in bad.output, (days, bad.output)
    db.session.expire_all()
    assert token_count() == 1


# --- a burst right after the password change, against a real threaded server --------------------

@pytest.fixture
def server(app):
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=5)


def test_thirty_parallel_calls_right_after_the_password_change_are_all_refused(server, acme):
    _, token = token_for("alice@example.com", acme)
    browser = requests.Session()
    csrf = CSRF_RE.search(browser.get(f"{server}/login", timeout=10).text).group(1)
    signed_in = browser.post(f"{server}/login", data={"email": "alice@example.com", "password": PASSWORD,
                                                       "csrf_token": csrf}, allow_redirects=False, timeout=10)
    assert signed_in.status_code == 302
    csrf = CSRF_RE.search(browser.get(f"{server}/account", timeout=10).text).group(1)
    assert requests.get(f"{server}/api/v1/me", headers=bearer(token), timeout=10).status_code == 200

    changed = browser.post(f"{server}/account", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                      "confirm": NEW_PASSWORD, "csrf_token": csrf},
                           allow_redirects=False, timeout=10)
    assert changed.status_code == 302

    barrier, results = threading.Barrier(30), []

    def call():
        barrier.wait()
        response = requests.get(f"{server}/api/v1/me", headers=bearer(token), timeout=30)
        results.append((response.status_code, response.json()["error"]["code"] if response.status_code != 200
                        else None))

    threads = [threading.Thread(target=call) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [(401, "token_revoked")] * 30


def test_thirty_parallel_calls_with_an_expired_token_change_nothing(server, acme):
    row, token = token_for("alice@example.com", acme)
    db.session.execute(update(ApiToken).where(ApiToken.id == row.id).values(expires_at=utcnow()))
    db.session.commit()
    barrier, results = threading.Barrier(30), []

    def call():
        barrier.wait()
        results.append(requests.post(f"{server}/api/v1/campaigns", headers=bearer(token),
                                     json={"name": "x", "mode": "OnDemand"}, timeout=30).status_code)

    threads = [threading.Thread(target=call) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [401] * 30
    assert db.session.execute(text("SELECT count(*) FROM campaigns")).scalar() == 0
    db.session.expire_all()
    assert db.session.get(ApiToken, row.id).last_used_at is None


def test_sessions_service_ends_tokens_without_a_request(acme):
    """`sessions.revoke_all` from a script (no request) ends the tokens as well."""
    row, _ = token_for("alice@example.com", acme)
    sessions.revoke_all(user("alice@example.com"))
    db.session.expire_all()
    assert db.session.get(ApiToken, row.id).revoked_reason == "signed_out_everywhere"


def test_a_password_change_that_lands_between_the_recheck_and_the_insert_refuses_the_token(acme, audit_events):
    """The creation's password re-check passed with the old password; the change committed before
    the token row: the token is refused and nothing is stored."""
    alice = user("alice@example.com")
    checked = alice.password_hash
    accounts.change_password(alice, PASSWORD, NEW_PASSWORD)  # commits while the creation is "in flight"

    with pytest.raises(DomainError) as refused:
        tokens.create_token(alice, acme, "racing", password_hash_seen=checked)

    assert refused.value.code == "password_changed" and refused.value.status == 409
    assert token_count() == 0 and audit_events(action="tokens.created") == []
    row, _ = tokens.create_token(user("alice@example.com"), acme, "after",
                                 password_hash_seen=user("alice@example.com").password_hash)
    assert row.revoked_at is None


def _signed_in(server, email, password, csrf_page):
    browser = requests.Session()
    csrf = CSRF_RE.search(browser.get(f"{server}/login", timeout=10).text).group(1)
    response = browser.post(f"{server}/login", data={"email": email, "password": password, "csrf_token": csrf},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302
    browser.csrf = CSRF_RE.search(browser.get(f"{server}{csrf_page}", timeout=10).text).group(1)
    return browser


def test_creating_a_token_while_the_password_changes_never_leaves_a_live_token(server, acme):
    """Real concurrent requests: one browser creates a token with the old password while another
    changes it. Whatever the interleaving, no live token made with the old password remains."""
    outcomes = []
    for _ in range(6):
        creator = _signed_in(server, "alice@example.com", PASSWORD, "/w/acme/tokens")
        changer = _signed_in(server, "alice@example.com", PASSWORD, "/account")
        barrier, results = threading.Barrier(2), {}

        def create():
            barrier.wait()
            results["create"] = creator.post(f"{server}/w/acme/tokens", allow_redirects=False, timeout=30, data={
                "name": "racing", "days": "30", "password": PASSWORD, "csrf_token": creator.csrf}).status_code

        def change():
            barrier.wait()
            results["change"] = changer.post(f"{server}/account", allow_redirects=False, timeout=30, data={
                "current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                "csrf_token": changer.csrf}).status_code

        threads = [threading.Thread(target=create), threading.Thread(target=change)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results["change"] == 302, results
        outcomes.append(results["create"])
        db.session.expire_all()
        live = db.session.scalar(db.select(db.func.count(ApiToken.id)).where(ApiToken.revoked_at.is_(None)))
        assert live == 0, f"a token made with the old password survived the change ({results})"
        accounts.change_password(user("alice@example.com"), NEW_PASSWORD, PASSWORD)  # next round
    assert set(outcomes) <= {200, 302, 400, 409}, outcomes
