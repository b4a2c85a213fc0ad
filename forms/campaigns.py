"""Campaign wizard, action and restore forms.

The forms parse and render; every rule (what a valid start time, SADDR or daily limit is) lives in
services/campaign_drafts/validation.py, shared with the API, and its field errors are attached back onto
these fields by name.
"""
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from models.campaigns import MODES
from models.states import Mode
from services.smpp import NPI_NAMES, NPI_VALUES, TON_NAMES, TON_VALUES

TON_CHOICES = [(str(v), f"{v} — {TON_NAMES[v]}") for v in TON_VALUES]
NPI_CHOICES = [(str(v), f"{v} — {NPI_NAMES[v]}") for v in NPI_VALUES]


# The one-line help under each mode of step 1 and on the review step.
MODE_HELP = {
    Mode.ON_DEMAND: "Sends right after a moderator approves it (or when you press Start, if auto-start is off).",
    Mode.ON_TIME: "Sends at the date and time you choose, in the workspace time zone, once approved.",
    Mode.SPREAD: "Spreads the recipients evenly over a window of days; each recipient gets one message.",
    Mode.TRIGGER: "Starts empty: after approval, client systems push numbers through the API and each "
                  "message goes out at once (for OTPs and alerts). Recipients are not uploaded.",
}


class ModeForm(FlaskForm):
    mode = RadioField("Delivery mode", choices=[(m, m) for m in MODES], validate_choice=False)


class ParametersForm(FlaskForm):
    name = StringField("Campaign name", render_kw={"maxlength": 120},
                       description="Shown in the list and to moderators, e.g. “May newsletter”.")
    sender_revision_id = SelectField("Sender name", choices=[], validate_choice=False,
                                     description="Only approved sender names are offered; the campaign keeps "
                                                 "this exact revision even if the name changes later.")
    text = TextAreaField("Message text", render_kw={"rows": 6, "data-segment-counter": "segment-counter"})
    daily_limit = StringField("Daily SMS limit (optional)", render_kw={"inputmode": "numeric"},
                              description="At most this many messages per day. Leave empty for no limit.")
    auto_start = BooleanField("Start automatically after approval",
                              description="Off: after approval the campaign waits in Pending for you to "
                                          "press Start.")
    start_at = StringField("Start at", render_kw={"type": "datetime-local"})
    window_start = StringField("First day", render_kw={"type": "date"})
    window_end = StringField("Last day", render_kw={"type": "date"})
    ignore_daily_window = BooleanField("Ignore the daily sending window (IgnoreDailyWindow)",
                                       description="For urgent OTPs: send even during the workspace's quiet "
                                                   "hours.")


class SmppForm(FlaskForm):
    saddr = StringField("SADDR (sender address)", render_kw={"maxlength": 15},
                        description="Up to 11 GSM characters, or up to 15 digits.")
    ston = SelectField("STON (source TON)", choices=TON_CHOICES, validate_choice=False)
    snpi = SelectField("SNPI (source NPI)", choices=NPI_CHOICES, validate_choice=False)
    dton = SelectField("DTON (destination TON)", choices=TON_CHOICES, validate_choice=False)
    dnpi = SelectField("DNPI (destination NPI)", choices=NPI_CHOICES, validate_choice=False)


class ActionForm(FlaskForm):
    """A button that changes a campaign: only the CSRF token."""


class RejectForm(FlaskForm):
    note = TextAreaField("Note for the author",
                         validators=[DataRequired(message="Write a note saying why; the author will see it."),
                                     Length(max=500)])


class RestoreOwnerForm(FlaskForm):
    owner = SelectField("New owner", choices=[], validate_choice=False,
                        description="The campaign's author is no longer an active member; the new owner "
                                    "will see and manage it.")
