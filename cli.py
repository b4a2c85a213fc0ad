"""Operator commands: `flask users …`, `flask workspaces …`, `flask tokens …`, `flask demo seed`."""
import os
import secrets as pysecrets

import click
from flask import current_app
from flask.cli import AppGroup

import audit
from blueprints.audit_cli import audit_cli
from blueprints.certs_cli import certs_cli
from blueprints.recipients_cli import recipients_cli
from extensions import db
from models import Workspace
from services import accounts, members, settings, tokens, workspaces
from services.errors import DomainError

users_cli = AppGroup("users", help="Manage accounts.")
workspaces_cli = AppGroup("workspaces", help="Manage workspaces.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")
demo_cli = AppGroup("demo", help="Demo data for a first start.")
settings_cli = AppGroup("settings", help="System settings (the policy ones can be changed at run time).")


def _fail(exc):
    raise click.ClickException(exc.message)


@users_cli.command("create-superadmin")
@click.option("--email", required=True)
@click.option("--password", required=True)
def create_superadmin(email, password):
    """Create a super admin (member of the Master workspace)."""
    try:
        user = accounts.create_user(email, password, is_superadmin=True)
        members.add_member(workspaces.get_by_slug("master"), user, "admin")
        db.session.commit()
    except DomainError as exc:
        _fail(exc)
    audit.record("users.superadmin_created", object_type="user", object_id=user.id,
                 after={"email": user.email, "is_superadmin": True}, note="cli")
    click.echo(f"Super admin {user.email} created.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--workspace", "slug", required=True)
@click.option("--role", type=click.Choice(["author", "moderator", "admin"]), default="author", show_default=True)
def create_user(email, password, slug, role):
    """Create an account and add it to a workspace."""
    try:
        workspace = workspaces.get_by_slug(slug)
        user = accounts.find_user(email)
        note = " (existing account: password unchanged)" if user is not None else ""
        user = user or accounts.create_user(email, password)
        membership = user.membership_in(workspace.id)
        if membership is not None:
            click.echo(f"{user.email} is already {membership.role} in {workspace.slug}; nothing changed.")
            return
        membership = members.add_member(workspace, user, role)
        db.session.commit()
        members.record_added(membership, "cli")
    except DomainError as exc:
        _fail(exc)
    click.echo(f"{user.email} is {membership.role} in {workspace.slug}{note}.")


@workspaces_cli.command("create")
@click.option("--slug", required=True)
@click.option("--name", required=True)
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--sending-window", default="00:00-24:00", show_default=True,
              help="HH:MM-HH:MM in the workspace time zone; 00:00-24:00 = no quiet hours.")
def create_workspace(slug, name, timezone, sending_window):
    """Create a workspace."""
    try:
        workspace = workspaces.create_workspace(slug, name, timezone, sending_window)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"Workspace {workspace.slug} created.")


@tokens_cli.command("create")
@click.option("--email", required=True)
@click.option("--workspace", "slug", required=True)
@click.option("--name", default="cli", show_default=True)
@click.option("--days", default=None, help="Lifetime in days, 1 to TOKEN_MAX_DAYS [default: TOKEN_DEFAULT_DAYS].")
def create_token(email, slug, name, days):
    """Create a personal access token and print it (shown once)."""
    user = accounts.find_user(email)
    if user is None:
        raise click.ClickException(f"No account {email}.")
    try:
        _, token = tokens.create_token(user, workspaces.get_by_slug(slug), name, days=days)
    except DomainError as exc:
        _fail(exc)
    click.echo(token)


@demo_cli.command("seed")
def seed():
    """First start: create a super admin and a demo workspace once, and print the credentials."""
    data_dir = current_app.config["MC_DATA_DIR"]  # the app's setting (env MC_DATA_DIR or its default)
    creds_path = os.path.join(data_dir, "first-start-credentials.txt")
    if db.session.execute(db.select(Workspace.id).filter_by(slug="demo")).first():
        click.echo(f"Demo already seeded; the first-start credentials are in {creds_path}.")
        return
    password = "-".join(pysecrets.token_urlsafe(6) for _ in range(3))
    email = "admin@example.com"
    user = accounts.find_user(email)
    if user is None:
        user = accounts.create_user(email, password, is_superadmin=True)
    else:  # never print a password that does not work
        password = "(unchanged: the account existed before the demo was seeded)"
    members.add_member(workspaces.get_by_slug("master"), user, "admin")
    demo = workspaces.create_workspace("demo", "Demo workspace", "UTC", "08:00-21:00")
    members.add_member(demo, user, "admin")
    db.session.commit()
    text = (f"Super admin: {email}\nPassword:    {password}\nDemo workspace: /w/demo/\n")
    os.makedirs(data_dir, exist_ok=True)
    fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    click.echo("First start — sign in with:\n" + text + f"(also saved to {creds_path})")


@settings_cli.command("show")
def show_settings():
    """Every setting with its value in force and where it comes from (secrets: set / not set)."""
    for row in settings.overview():
        mark = " [editable]" if row["editable"] else ""
        wins = " (the environment wins over a stored value)" if row["env_wins"] else ""
        click.echo(f"{row['key']} = {row['value']}  ({row['source']}){mark}{wins}")


@settings_cli.command("set")
@click.argument("key")
@click.argument("value")
def set_setting(key, value):
    """Store a policy setting (in force everywhere within SETTINGS_CACHE_SECONDS, no restart)."""
    try:
        stored = settings.change(key, value, actor_email="cli: flask settings set")
    except DomainError as exc:
        _fail(exc)
    name = key.strip().upper()
    note = " — but the environment sets it and stays in force" if settings.source(name) == "environment" else ""
    click.echo(f"{name} = {stored} stored{note}.")


def register_cli(app):
    for group in (users_cli, workspaces_cli, tokens_cli, demo_cli, certs_cli, recipients_cli, audit_cli, settings_cli):
        app.cli.add_command(group)
