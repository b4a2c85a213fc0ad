"""Members, invitations, join requests and the mail outbox of one workspace (admin pages)."""
from flask import Blueprint, current_app, flash, g, redirect, render_template, url_for
from flask_login import current_user

from blueprints import refusals_go_to
from blueprints.access import workspace_route
from forms.auth import ConfirmForm
from forms.workspaces import ApproveJoinForm, InviteForm, MemberForm, RejectForm
from services import invitations, join_requests, members

bp = Blueprint("members", __name__, url_prefix="/w/<slug>")


def _back():
    return redirect(url_for("members.index", slug=g.workspace.slug))


@bp.get("/members")
@workspace_route("members.view")
def index():
    rows = [(m, MemberForm(obj=m, prefix=f"m{m.id}")) for m in members.list_members(g.workspace)]
    return render_template("members/index.html", rows=rows, invite_form=InviteForm(), confirm=ConfirmForm(),
                           invitations=invitations.list_invitations(g.workspace),
                           joins=join_requests.pending_for(g.workspace),
                           approve_form=ApproveJoinForm(), reject_form=RejectForm(),
                           superadmins=members.superadmins_for(g.workspace))


@bp.post("/members/<int:member_id>")
@workspace_route("members.manage")
@refusals_go_to("members.index", missing_too=True)
def update(member_id):
    form = MemberForm(prefix=f"m{member_id}")
    if not form.validate():
        flash("Choose a role: author, moderator or admin.", "error")
        return _back()
    membership = members.change_member(g.workspace, member_id, role=form.role.data,
                                       is_moderator=form.is_moderator.data,
                                       can_view_numbers=form.can_view_numbers.data)
    flash(f"Saved {membership.user.email}: {membership.role}.", "success")
    return _back()


@bp.post("/members/<int:member_id>/remove")
@workspace_route("members.manage")
@refusals_go_to("members.index", missing_too=True)
def remove(member_id):
    if ConfirmForm().validate():
        members.remove_member(g.workspace, member_id)
        flash("Member removed.", "success")
    return _back()


@bp.post("/invitations")
@workspace_route("invitations.manage")
@refusals_go_to("members.index", missing_too=True)
def invite():
    form = InviteForm()
    if not form.validate():
        for errors in form.errors.values():
            flash(f"Invitation not sent: {errors[0]}", "error")
        return _back()
    invitation, _ = invitations.invite(g.workspace, form.email.data, form.role.data, current_user)
    where = "by e-mail" if current_app.config["MAIL_SERVER"] else "to the outbox (Members › Outbox)"
    flash(f"Invitation for {invitation.email} sent {where}.", "success")
    return _back()


@bp.post("/invitations/<int:invitation_id>/revoke")
@workspace_route("invitations.manage")
@refusals_go_to("members.index", missing_too=True)
def revoke_invitation(invitation_id):
    if ConfirmForm().validate():
        invitations.revoke(g.workspace, invitation_id)
        flash("Invitation revoked; its link no longer works.", "success")
    return _back()


@bp.post("/join-requests/<int:request_id>/approve")
@workspace_route("join_requests.manage")
@refusals_go_to("members.index", missing_too=True)
def approve_join(request_id):
    form = ApproveJoinForm()
    if form.validate():
        join_requests.approve(g.workspace, request_id, form.role.data, current_user)
        flash("Request approved; the user is now a member.", "success")
    return _back()


@bp.post("/join-requests/<int:request_id>/reject")
@workspace_route("join_requests.manage")
@refusals_go_to("members.index", missing_too=True)
def reject_join(request_id):
    form = RejectForm()
    if not form.validate():
        flash("Write a note saying why the request is rejected; the user will see it.", "error")
        return _back()
    join_requests.reject(g.workspace, request_id, form.note.data, current_user)
    flash("Request rejected; the user sees your note.", "success")
    return _back()


@bp.get("/outbox")
@workspace_route("outbox.view")
def outbox():
    return render_template("members/outbox.html", mails=invitations.outbox_for_display(g.workspace.id),
                           scope="workspace")
