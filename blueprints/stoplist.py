"""The workspace stop-list page (admins): add or remove a number, import an opt-out file, check
whether a number is blocked (here, or installation-wide by the Master stop-list — never which entry).

Forms are defined here because they belong to this page only (forms/stoplist.py if they grow).
The import file is read line by line from Werkzeug's spooled part — never `read()` whole.
"""
import io

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional

from blueprints import flash_error, refusals_go_to
from blueprints.access import can, workspace_route
from forms.auth import ConfirmForm
from services import stoplist
from services.errors import DomainError
from services.numbers import display_number

bp = Blueprint("stoplist", __name__, url_prefix="/w/<slug>")
IMPORT_MAX_BYTES = 20 * 1024 * 1024


class StopListAddForm(FlaskForm):
    number = StringField("Phone number", validators=[DataRequired(), Length(max=40)],
                         description="International format; spaces, dashes, brackets and a leading + or 00 are fine.")
    reason = StringField("Reason", validators=[Optional(), Length(max=200)],
                         description="e.g. “replied STOP on 2026-05-01”, ticket number.")
    submit = SubmitField("Add to stop-list")


class StopListImportForm(FlaskForm):
    file = FileField("Opt-out file (.csv or .txt, one number per line, up to 20 MB)", validators=[FileRequired()])
    # Its own id: the add form on the same page has a `reason` field too (ids are unique per page).
    reason = StringField("Reason", validators=[Optional(), Length(max=200)], id="import-reason")
    submit = SubmitField("Import")


def _page(add_form=None, import_form=None):
    try:
        after_arg = request.args.get("after")
        after = int(after_arg) if after_arg else None
    except ValueError:
        after = None
    full = can("numbers.view_full")
    try:
        entries, next_cursor = stoplist.entries(g.workspace, after_id=after, search=request.args.get("q"),
                                                may_view_full=full)
    except DomainError as exc:
        flash_error(exc)
        entries, next_cursor = [], None
    rows = [(e, display_number(e.number, full)) for e in entries]
    checked = None
    if request.args.get("check"):
        try:
            checked = {"blocked": stoplist.blocked_where(g.workspace, request.args["check"][:40])}
        except DomainError as exc:
            flash_error(exc)
    return render_template("stoplist/index.html", rows=rows, next_cursor=next_cursor, total=stoplist.count(g.workspace),
                           add_form=add_form or StopListAddForm(), import_form=import_form or StopListImportForm(),
                           confirm=ConfirmForm(), q=request.args.get("q", ""), checked=checked,
                           check=request.args.get("check", "")[:40])


@bp.url_value_preprocessor
def _raise_import_limit(endpoint, values):
    # URL value preprocessors run before every before_request hook, so the global CSRF check (which
    # parses the multipart form) already sees this route's own limit instead of the app-wide 1 MB.
    if endpoint == "stoplist.import_file":
        request.max_content_length = IMPORT_MAX_BYTES


@bp.route("/stop-list", methods=["GET", "POST"])
@workspace_route("stoplist.manage")
def index():
    form = StopListAddForm()
    if form.validate_on_submit():
        try:
            stoplist.add(g.workspace, form.number.data, form.reason.data)
        except DomainError as exc:
            flash_error(exc)
        else:
            flash("Number added to the stop-list; it will not receive messages from this workspace.", "success")
            return redirect(url_for("stoplist.index", slug=g.workspace.slug))
    return _page(add_form=form)


@bp.post("/stop-list/import")
@workspace_route("stoplist.manage")
def import_file():
    form = StopListImportForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for e in errors:
                flash(e, "error")
        return redirect(url_for("stoplist.index", slug=g.workspace.slug))
    part = form.file.data
    if not (part.filename or "").lower().endswith((".csv", ".txt")):
        flash("Only .csv or .txt files can be imported.", "error")
        return redirect(url_for("stoplist.index", slug=g.workspace.slug))
    lines = io.TextIOWrapper(part.stream, encoding="utf-8", errors="replace", newline=None)
    added, already, bad = stoplist.import_lines(g.workspace, lines, reason=form.reason.data or "import")
    flash(f"Imported: {added} added, {already} already on the list, {bad} lines were not phone numbers.",
          "success" if not bad else "info")
    return redirect(url_for("stoplist.index", slug=g.workspace.slug))


@bp.post("/stop-list/<int:entry_id>/remove")
@workspace_route("stoplist.manage")
@refusals_go_to("stoplist.index")
def remove(entry_id):
    if ConfirmForm().validate():
        stoplist.remove(g.workspace, entry_id)  # another workspace's or an unknown entry: the 404 page (app.py)
        flash("Number removed from the stop-list.", "success")
    return redirect(url_for("stoplist.index", slug=g.workspace.slug))
