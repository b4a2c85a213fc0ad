"""Sign-in (password and second step), password change, two-step set-up, invitation acceptance and
GDPR mode forms."""
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    IntegerField,
    PasswordField,
    StringField,
    SubmitField,
)
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Sign in")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=128)])
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("new_password", "The two passwords differ.")])
    submit = SubmitField("Change password")


class AcceptInvitationForm(FlaskForm):
    name = StringField("Your name", validators=[Length(max=120)])
    password = PasswordField("Choose a password", validators=[DataRequired(), Length(max=128)])
    confirm = PasswordField("Repeat the password",
                            validators=[DataRequired(), EqualTo("password", "The two passwords differ.")])
    submit = SubmitField("Create account and join")


class ConfirmForm(FlaskForm):
    """A bare POST with a CSRF token (accept, revoke, sign out…)."""
    submit = SubmitField("Confirm")


class SecondFactorForm(FlaskForm):
    code = StringField("Code from your authenticator app, or a recovery code",
                       validators=[DataRequired(), Length(max=32)])
    submit = SubmitField("Verify")


class TotpConfirmForm(FlaskForm):
    code = StringField("Code shown by the app", validators=[DataRequired(), Length(max=16)])
    submit = SubmitField("Turn on two-step sign-in")


class TotpDisableForm(FlaskForm):
    password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    code = StringField("Code from your authenticator app, or a recovery code",
                       validators=[DataRequired(), Length(max=32)])
    new_password = PasswordField("New password (required when your password is shorter than the "
                                 "password-only minimum)", validators=[Length(max=128)])
    submit = SubmitField("Turn off two-step sign-in")


class GdprEnableForm(FlaskForm):
    retention_days = IntegerField("Keep recipient numbers of finished campaigns for (days)",
                                  validators=[DataRequired(), NumberRange(min=1, max=3650)])
    confirm = BooleanField("I understand that anonymised numbers cannot be restored and that GDPR mode "
                           "cannot be turned off.", validators=[DataRequired()])
    submit = SubmitField("Turn on GDPR mode")
