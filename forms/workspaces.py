"""Workspace, member, invitation, join-request and token forms."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from services import tokens
from services.errors import DomainError

ROLE_CHOICES = [("author", "Author"), ("moderator", "Moderator"), ("admin", "Admin")]


class WorkspaceForm(FlaskForm):
    slug = StringField("Slug", validators=[DataRequired(), Length(max=40)],
                       description="Lowercase letters, digits and dashes; used in addresses (/w/<slug>/).")
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    timezone = StringField("Time zone", default="UTC", validators=[DataRequired(), Length(max=64)],
                           description="IANA name, e.g. Europe/Berlin.")
    sending_window = StringField("Sending window", default="00:00-24:00", validators=[DataRequired(), Length(max=11)],
                                 description="Daily window for sending, HH:MM-HH:MM in the workspace time zone; "
                                             "00:00-24:00 means no quiet hours.")
    submit = SubmitField("Create workspace")


class WorkspaceSettingsForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=64)])
    sending_window = StringField("Sending window", validators=[DataRequired(), Length(max=11)])
    four_eyes = BooleanField("Four-eyes: nobody approves their own campaign or sender revision")
    submit = SubmitField("Save settings")


class MemberForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    is_moderator = BooleanField("May moderate (authors only)")
    can_view_numbers = BooleanField("May see full phone numbers")
    submit = SubmitField("Save")


class InviteForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Send invitation")


class JoinForm(FlaskForm):
    slug = StringField("Workspace slug", validators=[DataRequired(), Length(max=40)])
    message = TextAreaField("Message to the admins", validators=[Optional(), Length(max=500)])
    submit = SubmitField("Ask to join")


class ApproveJoinForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Approve")


class RejectForm(FlaskForm):
    note = TextAreaField("Note", validators=[DataRequired(message="Write a note saying why."), Length(max=500)])
    submit = SubmitField("Reject")


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(max=80)],
                       description="Where the token is used, e.g. “billing OTP service”.")
    days = StringField("Lifetime in days", default=lambda: str(tokens.default_days()), validators=[Length(max=20)],
                       render_kw={"inputmode": "numeric"})
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=1024)],
                             description="Creating a token needs your password again.")
    submit = SubmitField("Create token")

    def validate_days(self, field):
        try:
            tokens.lifetime_days(field.data)  # the one rule (also used by the service and the CLI)
        except DomainError as exc:
            raise ValidationError(exc.message) from None


class SystemSettingForm(FlaskForm):
    """One run-time policy setting on /admin/settings (services/settings.py validates the value)."""
    key = StringField("Setting", validators=[DataRequired(), Length(max=64)])
    value = StringField("Value", validators=[Optional(), Length(max=20)])
    reset = SubmitField("Use the default")
    submit = SubmitField("Save")


class QuotaForm(FlaskForm):
    """A workspace's quotas (super admins); empty means no quota. services/quotas.py validates."""
    daily_messages = StringField("Messages per day (all campaigns)", validators=[Optional(), Length(max=20)],
                                 description="Counted per day in the workspace time zone; empty = no quota.")
    max_recipients_per_campaign = StringField("Recipients per campaign", validators=[Optional(), Length(max=20)],
                                              description="An upload that would exceed it fails and stores "
                                                          "nothing; empty = no quota.")
    submit = SubmitField("Save quotas")
