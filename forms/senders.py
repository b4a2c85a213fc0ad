"""Sender-name proposal, revision and moderation-note forms. The SMPP rules themselves (SADDR
alphabet and length, TON/NPI values) live in services/smpp.py; these forms only carry input."""
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from services.smpp import NPI_NAMES, TON_NAMES

AUTO = SelectChoice("", "Automatic (from the SADDR)")
TON_CHOICES = [AUTO] + [SelectChoice(str(k), f"{k} · {v}") for k, v in TON_NAMES.items()]
NPI_CHOICES = [AUTO] + [SelectChoice(str(k), f"{k} · {v}") for k, v in NPI_NAMES.items()]

SADDR_HELP = ("What recipients see as the sender: up to 11 letters/digits (GSM alphabet), "
              "or a number of up to 15 digits.")
TON_NPI_HELP = "Automatic: alphanumeric → TON 5 / NPI 0; numeric → TON 1 / NPI 1 (international)."


class _RevisionFields(FlaskForm):
    saddr = StringField("SADDR", validators=[DataRequired("Enter the sender address (SADDR)."), Length(max=15)],
                        description=SADDR_HELP)
    ton = SelectField("TON (source type of number)", choices=TON_CHOICES, default="", validators=[Optional()],
                      description=TON_NPI_HELP)
    npi = SelectField("NPI (source numbering plan)", choices=NPI_CHOICES, default="", validators=[Optional()])
    comment = TextAreaField("Comment for the moderator", validators=[Optional(), Length(max=500)],
                            description="Why this sender name, who owns the brand, a ticket number…")
    submit = SubmitField("Submit for approval")
    save_draft = SubmitField("Save as draft")


class SenderNameForm(_RevisionFields):
    name = StringField("Name", validators=[DataRequired("Give the sender name a label."), Length(max=80)],
                       description="A label for people, e.g. the brand or the service it stands for.")


class RevisionForm(_RevisionFields):
    pass


class DecisionNoteForm(FlaskForm):
    note = TextAreaField("Note for the author",
                         validators=[DataRequired("Write a note saying why; the author will see it."),
                                     Length(max=500)])
    submit = SubmitField("Reject")
