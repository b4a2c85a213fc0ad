"""A campaign's detail page (header, counters, actions, tabs) and the actions it posts."""
from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints import refusals_go_to
from blueprints.access import can, workspace_route
from blueprints.campaigns import bp
from forms.campaigns import ActionForm, RejectForm, RestoreOwnerForm
from models.states import CampaignStatus as S
from services import campaign_queries as queries
from services import campaigns as lifecycle
from services import contributors, dispatch, evidence, exports, retry, schedule, segments, smpp_codes
from services.campaign_drafts import steps as draft_steps
from services.errors import DomainError, NotFound

TABS = {"recipients": "Recipients", "job-errors": "Job errors", "message-errors": "Message errors",
        "audit": "Audit"}
ACTION_LABELS = {"submit": "Submit to moderation", "approve": "Approve", "reject": "Reject", "start": "Start",
                 "pause": "Pause", "resume": "Resume", "cancel": "Cancel", "finish": "End campaign",
                 "clone": "Clone", "archive": "Archive", "restore": "Restore"}
ACTION_STYLES = {"submit": "primary", "approve": "primary", "start": "primary", "resume": "primary",
                 "reject": "danger", "cancel": "danger"}
ACTION_CONFIRM = {"cancel": "Cancel this campaign? Nothing more will be sent; this cannot be undone.",
                  "finish": "End this Trigger campaign? Numbers pushed afterwards are refused.",
                  "archive": "Archive this campaign? It leaves the list; you can restore it later."}


def _detail_url(campaign_id, **kwargs):
    return url_for("campaigns.detail", slug=g.workspace.slug, campaign_id=campaign_id, **kwargs)


def _load(campaign_id, options=()):
    # Another workspace's or an unknown campaign: NotFound, the 404 page (app.py).
    return lifecycle.get_campaign(g.workspace, campaign_id, g.membership, current_user, options=options)


@bp.get("/<int:campaign_id>")
@workspace_route("campaigns.view")
def detail(campaign_id):
    campaign = _load(campaign_id, options=queries.detail_load_options())
    job_error_count, message_error_count = queries.error_counts(campaign)
    tab = request.args.get("tab", "recipients")
    if tab not in TABS:
        tab = "recipients"
    context = {"campaign": campaign, "tab": tab, "tabs": TABS,
               "actions": lifecycle.allowed_actions(campaign, g.membership, current_user),
               "labels": ACTION_LABELS, "styles": ACTION_STYLES, "confirms": ACTION_CONFIRM,
               "action_form": ActionForm(), "reject_form": RejectForm(),
               "info": segments.count(campaign.message_text),
               "smpp": draft_steps.effective_smpp(campaign),
               "editable": campaign.status == S.NEW and campaign.archived_at is None
               and lifecycle.is_owner_or_manager(campaign, g.membership, current_user),
               "problems": lifecycle.submit_problems(campaign) if campaign.status == S.NEW else [],
               "author_active": lifecycle.author_is_active_member(campaign),
               "job_error_count": job_error_count, "message_error_count": message_error_count,
               "contributors": contributors.listing(campaign), "notice": dispatch.notice(campaign),
               "starts": schedule.start_phrase(campaign) if campaign.status == S.PENDING else None,
               "retry_counts": _retry_counts(campaign)}
    context["exports"] = _exports(campaign)
    context["evidence_packs"] = evidence.for_campaign(campaign) if can("evidence.create") else None
    if tab == "recipients":
        try:
            after_id = int(request.args.get("after") or 0) or None
        except ValueError:
            after_id = None
        search = (request.args.get("q") or "").strip()[:64]
        try:
            page = queries.recipients_page(campaign, after_id=after_id, limit=50,
                                           may_view_full=can("numbers.view_full"), search=search)
        except DomainError as exc:
            flash(exc.message, "error")
            page = queries.RecipientPageView(rows=[], total=campaign.recipients_count)
            context["search_refused"] = True
        context.update(page=page, search=search)
    elif tab == "job-errors":
        context["job_errors"] = queries.job_errors(campaign, limit=100, may_view_full=can("numbers.view_full"))
    elif tab == "message-errors":
        context["message_errors"] = [(e, smpp_codes.describe(e.smpp_status))
                                     for e in queries.message_errors(campaign, limit=100)]
    else:
        context["events"] = queries.audit_events(campaign)
    return render_template("campaigns/detail.html", **context)


def _retry_counts(campaign):
    """{class: count} for "Send again to failed numbers", when this user may do it here (else None)."""
    if campaign.status not in retry.RETRYABLE or campaign.archived_at is not None or not can("campaigns.create") \
            or not lifecycle.is_owner_or_manager(campaign, g.membership, current_user):
        return None
    return retry.counts(campaign)


@bp.post("/<int:campaign_id>/retry")
@workspace_route("campaigns.view")
@refusals_go_to("campaigns.detail")
def retry_failed(campaign_id):
    """ "Send again to failed numbers": a new draft with the chosen class of failed recipients."""
    if not ActionForm().validate():
        flash("The form expired; reload the page and try again.", "error")
        return redirect(_detail_url(campaign_id))
    # A refusal is flashed on the campaign page (refusals_go_to); an unknown campaign is the 404 page.
    draft, n = retry.retry_failed(g.workspace, campaign_id, request.form.get("which"), g.membership, current_user)
    notes = getattr(draft, "clone_notes", [])
    flash(f"Draft #{draft.id} holds the {n:,} {request.form.get('which')} number{'' if n == 1 else 's'} of "
          f"campaign #{campaign_id}." + (f" To finish it: {'; '.join(notes)}." if notes else
                                         " Check it and submit it to moderation."), "success")
    return redirect(url_for("campaigns.wizard", slug=g.workspace.slug, campaign_id=draft.id,
                            step=draft.wizard_step))


def _exports(campaign):
    """Recent exports for the Export card, when the user may export."""
    if not can("exports.create"):
        return None
    return exports.for_campaign(campaign, limit=5)


SUCCESS = {
    "submit": "Submitted to moderation. A moderator approves or rejects it; the decision appears here.",
    "reject": "Rejected and returned to the author as a draft; they see your note.",
    "start": "Started: messages are going out.",
    "pause": "Paused: no new messages go out until you resume.",
    "resume": "Resumed: messages are going out again.",
    "cancel": "Cancelled: nothing more will be sent.",
    "finish": "Ended: the campaign accepts no more numbers.",
    "archive": "Archived: it left the list. Find it again with the list's Archived filter.",
    "restore": "Restored: the campaign is back in the list.",
}


def _approved_message(campaign):
    if campaign.status == S.SENDING:
        return "Approved: it is sending now."
    if campaign.status == S.EXPIRED:
        return "Approved too late: its start window had passed, so it expired. Clone it to send it again."
    if not campaign.auto_start:
        return "Approved. Auto-start is off: the author starts it with Start."
    return "Approved: it starts at its scheduled time."


@bp.post("/<int:campaign_id>/<action>")
@workspace_route("campaigns.view")
@refusals_go_to("campaigns.detail")
def act(campaign_id, action):
    if action not in lifecycle.USER_ACTIONS and action not in lifecycle.DECISIONS:
        abort(404)
    campaign = _load(campaign_id)
    if action == "restore" and campaign.archived_at is not None and not lifecycle.author_is_active_member(campaign):
        return redirect(url_for("campaigns.restore_owner", slug=g.workspace.slug, campaign_id=campaign_id))
    note = request.form.get("note")
    if action == "reject" and not (note or "").strip():
        flash("Write a note saying why the campaign is rejected; the author will see it.", "error")
        return redirect(_detail_url(campaign_id))
    result = lifecycle.perform(g.workspace, campaign_id, action, g.membership, current_user, note=note)
    if action == "clone":
        extra = getattr(result, "clone_notes", [])
        flash(f"Cloned into draft #{result.id} (no recipients)." +
              (f" To finish it: {'; '.join(extra)}." if extra else " Check it and add recipients."), "success")
        return redirect(url_for("campaigns.wizard", slug=g.workspace.slug, campaign_id=result.id,
                                step=result.wizard_step))
    if action == "approve":
        flash(_approved_message(result), "success")
    elif action == "start" and result.status == S.PENDING:
        flash(f"Scheduled: it {schedule.start_phrase(result)}. Nothing is sent before.", "success")
    elif action == "submit" and result.status == S.BUILDING:
        flash("Submitted. Recipients are being assigned to the days of the window; then it goes to the "
              "moderation queue.", "success")
    else:
        flash(SUCCESS[action], "success")
    return redirect(_detail_url(campaign_id))


@bp.route("/<int:campaign_id>/restore-owner", methods=["GET", "POST"])
@workspace_route("campaigns.view")
def restore_owner(campaign_id):
    campaign = _load(campaign_id)
    if campaign.archived_at is None:
        flash("This campaign is not archived.", "info")
        return redirect(_detail_url(campaign_id))
    with refusals_go_to("campaigns.detail"):
        lifecycle.ensure_may_act(campaign, "restore", g.membership, current_user)
    form = RestoreOwnerForm()
    candidates = lifecycle.owner_candidates(g.workspace)
    form.owner.choices = [(str(m.user_id), f"{m.user.name or m.user.email} ({m.user.email}, {m.role})")
                          for m in candidates]
    status = 200
    if request.method == "POST" and form.validate():
        try:
            lifecycle.restore_with_owner(g.workspace, campaign_id, form.owner.data, g.membership, current_user)
        except NotFound:
            raise  # the 404 page (app.py), not a field error
        except DomainError as exc:
            form.owner.errors = [exc.message]
            status = 400
        else:
            flash("Restored with its new owner; the campaign is back in the list.", "success")
            return redirect(_detail_url(campaign_id))
    return render_template("campaigns/restore_owner.html", campaign=campaign, form=form,
                           has_candidates=bool(candidates)), status
