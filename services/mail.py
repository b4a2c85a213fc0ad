"""Outgoing mail: SMTP when MAIL_SERVER is set, otherwise the outbox that admins read in the portal.

An SMTP failure is a typed `MailNotSent` (a DomainError), so callers decide what to undo.
"""
import smtplib
from email.message import EmailMessage

from flask import current_app

from extensions import db
from models import OutboxMail
from services.errors import DomainError


class MailNotSent(DomainError):
    """The SMTP server could not be reached or refused the mail."""

    code = "mail_failed"
    status = 502


def send_mail(recipient, subject, body, *, workspace_id=None):
    cfg = current_app.config
    if not cfg["MAIL_SERVER"]:
        db.session.add(OutboxMail(workspace_id=workspace_id, recipient=recipient, subject=subject, body=body))
        db.session.commit()
        return "outbox"
    message = EmailMessage()
    message["From"] = cfg["MAIL_FROM"]
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    try:
        with smtplib.SMTP(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], timeout=cfg["MAIL_TIMEOUT"]) as smtp:
            if cfg["MAIL_USE_TLS"]:
                smtp.starttls()
            if cfg["MAIL_USERNAME"]:
                smtp.login(cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"] or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:  # refused, unreachable, timed out
        current_app.logger.warning("mail to %s via %s:%s failed: %r", recipient, cfg["MAIL_SERVER"],
                                   cfg["MAIL_PORT"], exc)
        raise MailNotSent(f"The mail server {cfg['MAIL_SERVER']}:{cfg['MAIL_PORT']} did not accept the mail "
                          f"({exc.__class__.__name__}). Check MAIL_SERVER and MAIL_PORT, then try again.") from exc
    return "smtp"


def outbox(workspace_id=None, limit=100):
    query = db.select(OutboxMail).order_by(OutboxMail.id.desc()).limit(limit)
    if workspace_id is not None:
        query = query.where(OutboxMail.workspace_id == workspace_id)
    return list(db.session.execute(query).scalars())
