"""The five-step campaign wizard: mode, parameters, SMPP overrides, recipients, review and submit.

Every step is saved on Next, so a draft can be left and resumed from the list at `wizard_step`.
Trigger campaigns skip step 4. Only drafts (status New) can be edited.
"""
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2 import TemplateNotFound

from blueprints import refusals_go_to
from blueprints.access import can, workspace_route
from blueprints.campaigns import bp
from extensions import db
from forms.campaigns import MODE_HELP, ActionForm, ModeForm, ParametersForm, SmppForm
from models.states import CampaignStatus as S
from models.states import Mode
from services import campaigns as lifecycle
from services import preflight, recipients, segments
from services.campaign_drafts import api_shape as draft_api
from services.campaign_drafts import estimates as draft_estimates
from services.campaign_drafts import persistence as drafts
from services.campaign_drafts import steps as draft_steps
from services.campaign_drafts import validation as draft_validation
from services.errors import DomainError, NotFound

UPLOAD_WIDGET = "uploads/_widget.html"


def _wizard_url(campaign, step):
    return url_for("campaigns.wizard", slug=g.workspace.slug, campaign_id=campaign.id, step=step)


def _detail_url(campaign):
    return url_for("campaigns.detail", slug=g.workspace.slug, campaign_id=campaign.id)


def upload_widget_available():
    try:
        current_app.jinja_env.get_template(UPLOAD_WIDGET)
    except TemplateNotFound:
        return False
    return True


def _attach(form, exc):
    """Put a service's field errors onto the form's fields; report the rest as a flash."""
    leftover = []
    for name, message in getattr(exc, "fields", {}).items():
        if name in form._fields:
            form[name].errors = list(form[name].errors or []) + [message]
        else:
            leftover.append(message)
    if leftover or not getattr(exc, "fields", None):
        flash(" ".join(leftover) or exc.message, "error")
    else:
        flash("Some fields need your attention — see the messages below them.", "error")


@bp.route("/new", methods=["GET", "POST"])
@workspace_route("campaigns.create")
def new():
    form, status = ModeForm(), 200
    if request.method == "POST" and form.validate():
        try:
            campaign = drafts.create_draft(g.workspace, g.membership, current_user, form.mode.data)
        except DomainError as exc:
            _attach(form, exc)
            status = 400
        else:
            flash(f"Draft #{campaign.id} created as {campaign.mode}. Now set its parameters.", "success")
            return redirect(_wizard_url(campaign, 2))
    return render_template("campaigns/wizard.html", campaign=None, step=1, form=form, steps=draft_steps.STEPS,
                           step_list=list(draft_steps.STEPS), mode_help=MODE_HELP, back_step=None), status


@bp.route("/<int:campaign_id>/wizard/<int:step>", methods=["GET", "POST"])
@workspace_route("campaigns.create")
def wizard(campaign_id, step):
    # Another workspace's or an unknown campaign: NotFound, the 404 page (app.py).
    campaign = lifecycle.get_campaign(g.workspace, campaign_id, g.membership, current_user)
    if step not in draft_steps.STEPS:
        abort(404)
    detour = _detour(campaign, step)
    if detour is not None:
        return detour
    form = _form_for(campaign, step)
    if request.method == "POST":
        if not form.validate():
            flash("The form expired; reload the page and try again.", "error")
        else:
            saved = _save_or_attach(campaign, step, form)
            if saved is not None:
                return saved
    return _render(campaign, step, form, status=400 if request.method == "POST" else 200)


def _detour(campaign, step):
    """The page to show instead of `step`, if any: the upload's progress while recipients are read,
    the campaign page when the draft may not be edited (a refusal, flashed there), the next step for
    a Trigger campaign's step 4, the first unfinished step."""
    if draft_steps.is_uploading(campaign) and lifecycle.is_owner_or_manager(campaign, g.membership, current_user):
        # An upload moved the draft to Building; step 4 shows its progress, the rest waits for it.
        if request.method == "POST" or step != 4:
            flash("Recipients are still being read. The other steps can be edited again when the upload "
                  "has finished.", "info")
            return redirect(_wizard_url(campaign, 4))
        return _render(campaign, 4, ActionForm())
    with refusals_go_to("campaigns.detail"):
        draft_steps.ensure_editable(campaign, g.membership, current_user)
    if step == 4 and campaign.mode == Mode.TRIGGER:
        return redirect(_wizard_url(campaign, 5))
    if step > campaign.wizard_step:
        flash(f"Finish step {campaign.wizard_step} ({draft_steps.STEPS[campaign.wizard_step]}) first.", "info")
        return redirect(_wizard_url(campaign, campaign.wizard_step))
    return None


def _save_or_attach(campaign, step, form):
    """Save the step (the response to send), or put the service's refusal on the form (None)."""
    try:
        return _save_step(campaign, step, form)
    except NotFound:
        raise  # the 404 page (app.py), not a field error
    except DomainError as exc:
        _attach(form, exc)
        db.session.rollback()
        return None


@bp.post("/<int:campaign_id>/wizard/gsm7")
@workspace_route("campaigns.create")
@refusals_go_to("campaigns.wizard", step=5)
def use_gsm7(campaign_id):
    """The review step's "Use GSM-7 characters": replace what has a look-alike, save, show the parts."""
    if not ActionForm().validate():
        flash("The form expired; reload the page and try again.", "error")
        return redirect(url_for("campaigns.wizard", slug=g.workspace.slug, campaign_id=campaign_id, step=5))
    # A refusal is flashed on the review step (refusals_go_to); an unknown campaign is the 404 page.
    campaign, before, after = preflight.use_gsm7(g.workspace, campaign_id, g.membership, current_user)
    saved = before.segments - after.segments
    flash(f"Replaced with GSM-7 characters: now {after.encoding}, {after.segments} SMS part"
          f"{'' if after.segments == 1 else 's'} per recipient"
          + (f" ({saved} fewer)." if saved > 0 else "."), "success")
    return redirect(_wizard_url(campaign, 5))


def _form_for(campaign, step):
    if step == 1:
        return ModeForm(data={"mode": campaign.mode}) if request.method == "GET" else ModeForm()
    if step == 2:
        form = ParametersForm() if request.method == "POST" else ParametersForm(data=_parameters_data(campaign))
        revisions = draft_steps.approved_sender_revisions(g.workspace)
        form.sender_revision_id.choices = [("", "— choose a sender name —")] + [
            (str(r.id), f"{r.sender.label} · {r.saddr} (revision {r.number})") for r in revisions]
        form.start_at.description = (f"Date and time in the workspace time zone ({g.workspace.timezone}); "
                                     "must be in the future.")
        current = campaign.sender_revision
        if current is not None and current.id not in {r.id for r in revisions}:
            form.sender_revision_id.choices.insert(1, (str(current.id), f"{current.saddr} — no longer approved, "
                                                                         "choose another"))
        return form
    if step == 3:
        if request.method == "POST":
            return SmppForm()
        values, _, _ = draft_steps.effective_smpp(campaign)
        return SmppForm(data={k: ("" if v is None else str(v)) for k, v in values.items()})
    return ActionForm()


def _parameters_data(campaign):
    first, last = draft_api.api_start_window(campaign)
    return {"name": campaign.name, "sender_revision_id": str(campaign.sender_revision_id or ""),
            "text": campaign.message_text, "daily_limit": campaign.daily_limit or "",
            "auto_start": campaign.auto_start,
            "start_at": (draft_validation.local_input_value(campaign.start_at, g.workspace)
                         if campaign.mode == Mode.ON_TIME else ""),
            "window_start": first or "", "window_end": last or "",
            "ignore_daily_window": campaign.ignore_daily_window}


def _save_step(campaign, step, form):
    leave = request.form.get("then") == "exit"
    if step == 1:
        drafts.save_mode(g.workspace, campaign.id, form.mode.data, g.membership, current_user)
    elif step == 2:
        drafts.save_parameters(g.workspace, campaign.id, request.form.to_dict(), g.membership, current_user)
    elif step == 3:
        drafts.save_smpp(g.workspace, campaign.id, request.form.to_dict(), g.membership, current_user)
    elif step == 4:
        drafts.finish_recipients(g.workspace, campaign.id, g.membership, current_user)
    else:
        campaign = lifecycle.perform(g.workspace, campaign.id, "submit", g.membership, current_user)
        if campaign.status == S.BUILDING:
            flash("Submitted. Recipients are being assigned to the days of the window; then the campaign "
                  "goes to the moderation queue. You will see the decision on this page.", "success")
        else:
            flash("Submitted to moderation. A moderator approves or rejects it; the decision and any note "
                  "appear on this page and in its Audit tab.", "success")
        return redirect(_detail_url(campaign))
    if leave:
        flash(f"Draft #{campaign.id} saved. Continue it any time from the campaigns list.", "success")
        return redirect(url_for("campaigns.index", slug=g.workspace.slug))
    return redirect(_wizard_url(campaign, draft_steps.next_step(campaign, step)))


def _widget_upload(campaign):
    """The latest upload's status for the widget."""
    return recipients.widget_upload(campaign, may_view_full=can("numbers.view_full"))


def _render(campaign, step, form, status=200):
    context = {"campaign": campaign, "step": step, "form": form, "steps": draft_steps.STEPS,
               "step_list": draft_steps.steps_for(campaign), "mode_help": MODE_HELP,
               "back_step": draft_steps.previous_step(campaign, step)}
    if step == 3:
        context["smpp_defaults"] = draft_steps.effective_smpp(campaign)[1]
    if step == 4:
        context["has_upload_widget"] = upload_widget_available()
        context["upload"] = _widget_upload(campaign)
        context["uploads_running"] = lifecycle.uploads_running(campaign)
    if step == 5:
        context["review"] = draft_estimates.review(campaign)
        context["forecast"] = preflight.estimate(campaign)
        context["hints"] = preflight.encoding_hints(campaign.message_text)
        context["highlighted"] = preflight.highlighted(campaign.message_text) if context["hints"] else None
    if step == 2:
        context["has_senders"] = len(form.sender_revision_id.choices) > 1
        context["senders_url"] = (url_for("senders.index", slug=g.workspace.slug)
                                  if "senders.index" in current_app.view_functions else None)
        context["info"] = segments.count((form.text.data or "").replace("\r\n", "\n"))
    if step == 5:
        context["tz"] = ZoneInfo(g.workspace.timezone or "UTC")
        from services import diagnostics  # the pre-flight checklist, for large campaigns only

        if diagnostics.preflight_required(campaign):
            context["preflight"] = diagnostics.preflight(campaign)
    return render_template("campaigns/wizard.html", **context), status
