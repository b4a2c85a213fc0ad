"""Operator commands through Flask's CLI runner: super admins, users, workspaces, API tokens and
the first-start demo seed; bad input exits non-zero with a message saying what to fix."""
import os
import re
import stat

import pytest

from extensions import db
from models import ApiToken, Workspace
from services import accounts, passwords, workspaces
from tests.factories import PASSWORD, make_user, make_workspace


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        result = runner.invoke(args=list(args))
        db.session.expire_all()  # the command committed through the same session
        return result

    return invoke


def test_create_superadmin(cli, client, audit_events):
    result = cli("users", "create-superadmin", "--email", "Root@Example.com", "--password", "root password for ops")

    assert result.exit_code == 0, result.output
    assert "Super admin root@example.com created." in result.output
    root = accounts.find_user("root@example.com")
    assert root.is_superadmin
    assert root.membership_in(workspaces.get_by_slug("master").id).role == "admin"
    event = audit_events(action="users.superadmin_created")[0]
    assert event["object_id"] == str(root.id) and event["after"] == {"email": "root@example.com",
                                                                     "is_superadmin": True}
    assert client.login("root@example.com", "root password for ops").status_code == 302
    assert client.get("/").headers["Location"].endswith("/w/master/")  # super admins land in Master


def test_create_superadmin_refuses_bad_input(cli):
    for email, password, message in (
        ("root@example.com", "short", "Use at least 15 characters (you typed 5)."),
        ("root@example.com", "1q2w3e4r5t6y7u8i9o0p", "commonly used passwords"),
        ("not-an-address", "root password for ops", "Enter a valid e-mail address."),
    ):
        result = cli("users", "create-superadmin", "--email", email, "--password", password)

        assert result.exit_code == 1, result.output
        assert message in result.output
        assert accounts.find_user(email) is None


def test_create_superadmin_refuses_an_existing_account(cli):
    make_user("root@example.com")

    result = cli("users", "create-superadmin", "--email", "root@example.com", "--password", "root password for ops")

    assert result.exit_code == 1
    assert "An account for root@example.com already exists." in result.output
    assert accounts.find_user("root@example.com").is_superadmin is False


def test_create_user_in_a_workspace(cli, client, audit_events):
    ws = make_workspace("acme")

    result = cli("users", "create", "--email", "op@example.com", "--password", "operator pass phrase",
                 "--workspace", "acme", "--role", "moderator")

    assert result.exit_code == 0, result.output
    assert "op@example.com is moderator in acme." in result.output
    assert accounts.find_user("op@example.com").membership_in(ws.id).role == "moderator"
    event = audit_events(action="members.added")[0]
    assert event["workspace_id"] == ws.id and event["note"] == "cli"
    assert event["after"]["user"] == "op@example.com" and event["after"]["role"] == "moderator"
    assert client.login("op@example.com", "operator pass phrase").status_code == 302


def test_create_user_for_an_existing_account_adds_the_membership_only(cli):
    make_user("op@example.com")
    ws = make_workspace("acme")

    result = cli("users", "create", "--email", "op@example.com", "--password", "another pass phrase",
                 "--workspace", "acme")

    assert result.exit_code == 0, result.output
    assert "op@example.com is author in acme (existing account: password unchanged)." in result.output
    assert accounts.find_user("op@example.com").membership_in(ws.id).role == "author"
    assert passwords.verify_password(accounts.find_user("op@example.com").password_hash, PASSWORD)


def test_create_user_twice_changes_nothing(cli, audit_events):
    make_user("op@example.com", workspace=make_workspace("acme"), role="author")

    result = cli("users", "create", "--email", "op@example.com", "--password", "operator pass phrase",
                 "--workspace", "acme", "--role", "admin")

    assert result.exit_code == 0
    assert "op@example.com is already author in acme; nothing changed." in result.output
    assert audit_events(action="members.added") == []


def test_create_user_errors(cli):
    make_workspace("acme")

    unknown_ws = cli("users", "create", "--email", "op@example.com", "--password", "operator pass phrase",
                     "--workspace", "nope")
    bad_role = cli("users", "create", "--email", "op@example.com", "--password", "operator pass phrase",
                   "--workspace", "acme", "--role", "owner")
    weak = cli("users", "create", "--email", "op@example.com", "--password", "op@example.com",
               "--workspace", "acme")

    assert unknown_ws.exit_code == 1 and "No workspace with the slug 'nope'." in unknown_ws.output
    assert bad_role.exit_code == 2 and "owner" in bad_role.output
    assert weak.exit_code == 1 and "Do not use your e-mail address as your password." in weak.output
    assert accounts.find_user("op@example.com") is None


def test_create_workspace(cli, audit_events):
    result = cli("workspaces", "create", "--slug", "acme", "--name", "Acme Ltd", "--timezone", "Europe/Berlin",
                 "--sending-window", "08:00-21:00")

    assert result.exit_code == 0, result.output
    assert "Workspace acme created." in result.output
    ws = workspaces.get_by_slug("acme")
    assert (ws.name, ws.timezone, ws.window_start, ws.window_end) == ("Acme Ltd", "Europe/Berlin", "08:00", "21:00")
    event = audit_events(action="workspace.created")[0]
    assert event["after"]["sending_window"] == "08:00-21:00" and event["after"]["timezone"] == "Europe/Berlin"


def test_create_workspace_refuses_bad_settings(cli):
    for option, value, message in (
        ("--sending-window", "8-21", "Sending window must look like 08:00-21:00"),
        ("--sending-window", "21:00-08:00", "The sending window must end after it starts."),
        ("--timezone", "Mars/Olympus_Mons", "Unknown time zone 'Mars/Olympus_Mons'"),
        ("--slug", "Not A Slug!", "The slug may use lowercase letters, digits and dashes"),
    ):
        args = {"--slug": "acme", "--name": "Acme", "--timezone": "UTC", "--sending-window": "00:00-24:00"}
        args[option] = value

        result = cli("workspaces", "create", *[part for pair in args.items() for part in pair])

        assert result.exit_code == 1, (option, value, result.output)
        assert message in result.output
        assert db.session.execute(db.select(Workspace).filter_by(name="Acme")).first() is None


def test_create_workspace_refuses_a_taken_slug(cli):
    make_workspace("acme", "Acme Ltd")

    result = cli("workspaces", "create", "--slug", "acme", "--name", "Other")

    assert result.exit_code == 1
    assert "The slug 'acme' is already taken." in result.output
    assert workspaces.get_by_slug("acme").name == "Acme Ltd"


def test_create_token_prints_a_token_that_works(cli, client, audit_events):
    ws = make_workspace("acme")
    make_user("op@example.com", workspace=ws, role="admin")

    result = cli("tokens", "create", "--email", "op@example.com", "--workspace", "acme", "--name", "billing")

    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("mc_") and "\n" not in token
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == "op@example.com" and me.get_json()["role"] == "admin"
    assert audit_events(action="tokens.created")[0]["after"]["name"] == "billing"


def test_create_token_errors(cli):
    ws = make_workspace("acme")
    make_user("outsider@example.com")
    make_user("op@example.com", workspace=ws)

    no_account = cli("tokens", "create", "--email", "ghost@example.com", "--workspace", "acme")
    not_member = cli("tokens", "create", "--email", "outsider@example.com", "--workspace", "acme")
    no_workspace = cli("tokens", "create", "--email", "op@example.com", "--workspace", "nope")

    assert no_account.exit_code == 1 and "No account ghost@example.com." in no_account.output
    assert not_member.exit_code == 1 and "outsider@example.com is not a member of acme." in not_member.output
    assert no_workspace.exit_code == 1 and "No workspace with the slug 'nope'." in no_workspace.output
    assert db.session.execute(db.select(ApiToken)).first() is None


def test_demo_seed_is_idempotent_and_saves_the_credentials(cli, client, app):
    creds = os.path.join(app.config["MC_DATA_DIR"], "first-start-credentials.txt")

    first = cli("demo", "seed")

    assert first.exit_code == 0, first.output
    assert "First start — sign in with:" in first.output and creds in first.output
    password = re.search(r"Password:\s+(\S+)", first.output).group(1)
    with open(creds, encoding="utf-8") as fh:
        saved = fh.read()
    assert "Super admin: admin@example.com" in saved and password in saved
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    admin = accounts.find_user("admin@example.com")
    assert admin.is_superadmin
    assert admin.membership_in(workspaces.get_by_slug("demo").id).role == "admin"
    demo = workspaces.get_by_slug("demo")
    assert demo.sending_window == "08:00-21:00"
    assert client.login("admin@example.com", password).status_code == 302

    second = cli("demo", "seed")

    assert second.exit_code == 0
    assert "Demo already seeded" in second.output and creds in second.output
    assert "Password:" not in second.output
    with open(creds, encoding="utf-8") as fh:
        assert fh.read() == saved
    assert db.session.scalar(db.select(db.func.count(Workspace.id)).filter_by(slug="demo")) == 1


def test_demo_seed_never_prints_a_password_that_does_not_work(cli, client):
    make_user("admin@example.com")  # an operator created this account earlier

    result = cli("demo", "seed")

    assert result.exit_code == 0, result.output
    printed = re.search(r"Password:\s+(.+)", result.output).group(1)
    assert client.login("admin@example.com", printed).status_code == 401
    assert "unchanged" in printed
