"""Sign-in, password change and invitation acceptance forms."""
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length


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
