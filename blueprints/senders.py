"""Sender-name pages: the registry list, one name with its revision history, proposals, archive."""
from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask_login import current_user

from blueprints import flash_error, refusals_go_to
from blueprints.access import workspace_route
from forms.auth import ConfirmForm
from forms.senders import RevisionForm, SenderNameForm
from models.states import RevisionState
from services import senders
from services.errors import DomainError, NotFound

bp = Blueprint("senders", __name__, url_prefix="/w/<slug>")

# Which form field a service refusal belongs to (the rest become a flash).
FIELD_OF_CODE = {"invalid_saddr": "saddr", "invalid_ton": "ton", "invalid_npi": "npi", "invalid_name": "name",
                 "duplicate_name": "name", "invalid_comment": "comment", "unchanged": "saddr"}


def _scoped(fn, *args):
    """Call a service lookup; another workspace's id is a 404 page (services.errors.NotFound, app.py)."""
    return fn(g.workspace, *args)


def _place_error(form, exc):
    field = getattr(form, FIELD_OF_CODE.get(exc.code, ""), None)
    if field is None:
        flash_error(exc)
    else:
        field.errors = list(field.errors or []) + [exc.message]


def _detail(sender_id):
    return redirect(url_for("senders.detail", slug=g.workspace.slug, sender_id=sender_id))


def _render_index(form, status=200):
    return render_template("senders/index.html", form=form, confirm=ConfirmForm(),
                           active=senders.list_senders(g.workspace),
                           archived=senders.list_senders(g.workspace, archived=True),
                           current_revision=senders.current_revision, open_revision=senders.open_revision), status


@bp.get("/senders")
@workspace_route("senders.view")
def index():
    return _render_index(SenderNameForm())


@bp.post("/senders")
@workspace_route("senders.propose")
def create():
    form = SenderNameForm()
    if not form.validate():
        flash("The sender name was not proposed: correct the fields marked below.", "error")
        return _render_index(form, 422)
    draft = bool(form.save_draft.data)
    try:
        revision = senders.propose(g.workspace, g.membership, current_user, label=form.name.data,
                                   saddr=form.saddr.data, ton=form.ton.data, npi=form.npi.data,
                                   comment=form.comment.data, draft=draft)
    except DomainError as exc:
        _place_error(form, exc)
        return _render_index(form, 422)
    if draft:
        flash(f"Saved “{revision.sender.label}” as a draft; submit revision #1 for approval when it is ready.",
              "success")
    else:
        flash(f"Proposed “{revision.sender.label}” ({revision.saddr}); revision #1 is waiting for a moderator. "
              "It can be used in campaigns once approved.", "success")
    return _detail(revision.sender_id)


def _render_detail(sender, form, status=200):
    revisions = sorted(sender.revisions, key=lambda r: -r.number)
    latest = revisions[0] if revisions else None
    latest_rejected = latest if latest is not None and latest.state == RevisionState.REJECTED else None
    return render_template("senders/detail.html", sender=sender, revisions=revisions, form=form,
                           confirm=ConfirmForm(), current=senders.current_revision(sender),
                           waiting=senders.open_revision(sender),
                           latest_rejected=latest_rejected), status


@bp.get("/senders/<int:sender_id>")
@workspace_route("senders.view")
def detail(sender_id):
    sender = _scoped(senders.get_sender, sender_id)
    return _render_detail(sender, RevisionForm())


@bp.post("/senders/<int:sender_id>/revisions")
@workspace_route("senders.propose")
def propose_revision(sender_id):
    sender = _scoped(senders.get_sender, sender_id)
    form = RevisionForm()
    if not form.validate():
        flash("The revision was not proposed: correct the fields marked below.", "error")
        return _render_detail(sender, form, 422)
    draft = bool(form.save_draft.data)
    try:
        revision = senders.propose_revision(g.workspace, sender.id, g.membership, current_user,
                                            saddr=form.saddr.data, ton=form.ton.data, npi=form.npi.data,
                                            comment=form.comment.data, draft=draft)
    except NotFound:
        raise  # the 404 page (app.py), not a field error
    except DomainError as exc:
        _place_error(form, exc)
        return _render_detail(sender, form, 422 if exc.code in FIELD_OF_CODE else exc.status)
    if draft:
        flash(f"Saved revision #{revision.number} ({revision.saddr}) as a draft; submit it for approval when "
              "it is ready.", "success")
    else:
        flash(f"Proposed revision #{revision.number} ({revision.saddr}); it is waiting for a moderator. "
              "Campaigns keep using the current approved revision until then.", "success")
    return _detail(sender.id)


@bp.post("/senders/revisions/<int:revision_id>/submit")
@workspace_route("senders.propose")
def submit_revision(revision_id):
    revision = _scoped(senders.get_revision, revision_id)
    if ConfirmForm().validate():
        with refusals_go_to("senders.detail", sender_id=revision.sender_id):
            senders.submit_draft(g.workspace, revision.id, g.membership, current_user)
        flash(f"Revision #{revision.number} ({revision.saddr}) is now waiting for a moderator.", "success")
    return _detail(revision.sender_id)


@bp.post("/senders/revisions/<int:revision_id>/withdraw")
@workspace_route("senders.propose")
def withdraw_revision(revision_id):
    revision = _scoped(senders.get_revision, revision_id)
    if ConfirmForm().validate():
        with refusals_go_to("senders.detail", sender_id=revision.sender_id):
            senders.withdraw(g.workspace, revision.id, g.membership, current_user)
        flash(f"Revision #{revision.number} ({revision.saddr}) was withdrawn; you can propose a "
              "corrected SADDR now.", "success")
    return _detail(revision.sender_id)


@bp.post("/senders/<int:sender_id>/archive")
@workspace_route("senders.archive")
@refusals_go_to("senders.detail")
def archive(sender_id):
    sender = _scoped(senders.get_sender, sender_id)
    if ConfirmForm().validate():
        senders.archive(g.workspace, sender.id, g.membership, current_user)
        flash(f"Archived “{sender.label}”: new campaigns can no longer choose it; campaigns already using "
              "it are not affected.", "success")
    return _detail(sender.id)
