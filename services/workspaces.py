"""Workspaces: creation (super admin), settings, and the cross-workspace overview."""
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func

import audit
from extensions import db
from models import Membership, Workspace
from services.errors import DomainError, NotFound

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
WINDOW_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):([0-5]\d)|24:00)$")


def parse_sending_window(text):
    """'HH:MM-HH:MM' -> (start, end); '00:00-24:00' means no quiet hours."""
    text = (text or "").strip() or "00:00-24:00"
    if not WINDOW_RE.match(text):
        raise DomainError("Sending window must look like 08:00-21:00 (use 00:00-24:00 for no quiet hours).",
                          code="invalid_window")
    start, end = text.split("-")
    if end != "24:00" and end <= start:
        raise DomainError("The sending window must end after it starts.", code="invalid_window")
    return start, end


def validate_timezone(name):
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(f"Unknown time zone {name!r}; use an IANA name such as Europe/Berlin.",
                          code="invalid_timezone") from None
    return name


def get_by_slug(slug):
    workspace = db.session.execute(db.select(Workspace).filter_by(slug=slug)).scalar_one_or_none()
    if workspace is None:
        raise NotFound(f"No workspace with the slug {slug!r}.")
    return workspace


def master():
    """The Master workspace (migration 0001): where super admins land; its stop-list is installation-wide."""
    return db.session.execute(
        db.select(Workspace).filter_by(is_master=True).order_by(Workspace.id).limit(1)).scalar_one()


def create_workspace(slug, name, timezone="UTC", sending_window="00:00-24:00"):
    slug = (slug or "").strip().lower()
    if not SLUG_RE.match(slug):
        raise DomainError("The slug may use lowercase letters, digits and dashes (1–40 characters).",
                          code="invalid_slug")
    if db.session.execute(db.select(Workspace.id).filter_by(slug=slug)).first():
        raise DomainError(f"The slug {slug!r} is already taken.", code="exists", status=409)
    if not (name or "").strip():
        raise DomainError("Give the workspace a name.", code="invalid_name")
    start, end = parse_sending_window(sending_window)
    workspace = Workspace(slug=slug, name=name.strip(), timezone=validate_timezone(timezone or "UTC"),
                          window_start=start, window_end=end)
    db.session.add(workspace)
    db.session.commit()
    audit.record("workspace.created", workspace_id=workspace.id, object_type="workspace", object_id=workspace.id,
                 after=settings_snapshot(workspace))
    return workspace


def settings_snapshot(workspace):
    return {"slug": workspace.slug, "name": workspace.name, "timezone": workspace.timezone,
            "sending_window": workspace.sending_window, "four_eyes": workspace.four_eyes}


def update_settings(workspace, *, name, timezone, sending_window, four_eyes):
    before = settings_snapshot(workspace)
    if not (name or "").strip():
        raise DomainError("Give the workspace a name.", code="invalid_name")
    start, end = parse_sending_window(sending_window)
    workspace.name = name.strip()
    workspace.timezone = validate_timezone(timezone)
    workspace.window_start, workspace.window_end = start, end
    workspace.four_eyes = bool(four_eyes)
    db.session.commit()
    audit.record("workspace.settings_changed", workspace_id=workspace.id, object_type="workspace",
                 object_id=workspace.id, before=before, after=settings_snapshot(workspace))


def workspaces_overview():
    """Every workspace with its member count (one grouped query), for the super admin."""
    counts = dict(db.session.execute(
        db.select(Membership.workspace_id, func.count(Membership.id)).group_by(Membership.workspace_id)).all())
    workspaces = db.session.execute(db.select(Workspace).order_by(Workspace.is_master.desc(), Workspace.name)).scalars()
    return [{"workspace": w, "members": counts.get(w.id, 0)} for w in workspaces]


def workspaces_for(user):
    if user.is_superadmin:
        return list(db.session.execute(db.select(Workspace).order_by(Workspace.name)).scalars())
    return sorted((m.workspace for m in user.memberships), key=lambda w: w.name)
