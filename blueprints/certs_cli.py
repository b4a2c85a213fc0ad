"""`flask certs dev|verify|rotate-client` — certificates of the mTLS link to the SMS Core."""
import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from services import certs

certs_cli = AppGroup("certs", help="Certificates of the mTLS link to the SMS Core.")


@certs_cli.command("dev")
@click.option("--force", is_flag=True, help="Regenerate the whole set (new CA) even when files exist.")
def dev(force):
    """Write a development CA, server and client certificates into MC_DATA_DIR/certs/."""
    directory = certs.certs_dir(current_app.config["MC_DATA_DIR"])
    try:
        written = certs.generate_dev(directory, force=force)
    except certs.CertError as exc:
        raise click.ClickException(str(exc)) from None
    if not written:
        click.echo(f"Development certificates already present in {directory} (use --force to regenerate).")
        return
    click.echo(f"Wrote {', '.join(written)} to {directory} (keys 0600).")


@certs_cli.command("verify")
def verify():
    """Check the CA chain, that each key matches its certificate, and expiry."""
    checks = certs.verify_installation(current_app.config)
    for check in checks:
        click.echo(check.line())
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        click.echo(f"{len(failed)} check(s) failed.", err=True)
        sys.exit(1)
    warned = sum(1 for c in checks if c.status == "warn")
    click.echo("Certificates OK" + (f" ({warned} warning(s))." if warned else "."))


@certs_cli.command("rotate-client")
@click.option("--ca-key", default=None, help="CA private key (default: ca.key next to CORE_CA).")
@click.option("--cn", default="message-center", show_default=True)
@click.option("--days", default=certs.LEAF_DAYS, show_default=True, type=int)
def rotate_client(ca_key, cn, days):
    """Issue a new client certificate from the CA and install it over CORE_CLIENT_CERT/KEY.
    Running processes pick it up on their next Core call (no restart)."""
    cfg = current_app.config
    ca_key = ca_key or os.path.join(os.path.dirname(cfg["CORE_CA"]), "ca.key")
    try:
        cert = certs.issue_client_cert(cfg["CORE_CA"], ca_key, cfg["CORE_CLIENT_CERT"], cfg["CORE_CLIENT_KEY"],
                                       cn=cn, days=days)
    except certs.CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"New client certificate installed at {cfg['CORE_CLIENT_CERT']} "
               f"(serial {cert.serial_number:x}, valid until {cert.not_valid_after_utc:%Y-%m-%d}).")
