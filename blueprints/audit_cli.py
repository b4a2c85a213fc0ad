"""`flask audit seal|verify` — sealed audit checkpoints (services/audit_seals.py, docs/security.md).

`verify` exits 0 when every seal checks out, 1 when an event is missing, altered or inserted (the
first one is named), 2 when the audit store cannot be read (never "verified" then).
"""
import sys
from datetime import UTC, datetime

import click
from flask.cli import AppGroup

from audit.store import AuditStoreUnavailable
from services import audit_seals, workspaces
from services.errors import DomainError

audit_cli = AppGroup("audit", help="Sealed audit checkpoints: seal now, verify the trail.")


def _parse_since(value):
    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or date-time (e.g. 2026-11-28T10:00Z).",
                                 param_hint="--since") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


@audit_cli.command("seal")
def seal():
    """Seal the audit events that arrived since the last seal (what the periodic job does)."""
    try:
        rows = audit_seals.seal_all()
    except AuditStoreUnavailable as exc:
        click.echo(f"Audit store unreachable, nothing more sealed: {exc}", err=True)
        sys.exit(2)
    if not rows:
        click.echo("Nothing new to seal (the last seal is younger than AUDIT_SEAL_GRACE_SECONDS).")
    for row in rows:
        click.echo(f"[audit-seal] id={row.id} events={row.events} root={row.root}")


@audit_cli.command("verify")
@click.option("--since", default=None, help="Only seals covering arrivals since this ISO date-time (UTC if no zone).")
@click.option("--workspace", "slug", default=None, help="Only the events of this workspace.")
def verify(since, slug):
    """Recompute every seal from the audit store; name the first missing, altered or inserted event."""
    since_at = _parse_since(since)
    workspace_id = None
    if slug is not None:
        try:
            workspace_id = workspaces.get_by_slug(slug).id
        except DomainError as exc:
            raise click.BadParameter(exc.message, param_hint="--workspace") from None
    result = audit_seals.verify(since=since_at, workspace_id=workspace_id, source="cli")
    if result.outcome == audit_seals.UNAVAILABLE:
        click.echo(f"NOT VERIFIED: {result.message}", err=True)
        sys.exit(2)
    if result.outcome == audit_seals.FAILED:
        click.echo(f"FAILED: first bad event: {result.first}", err=True)
        for problem in result.problems[1:]:
            click.echo(f"  also: {problem}", err=True)
        sys.exit(1)
    extra = f" ({result.expired} past retention)" if result.expired else ""
    click.echo(f"verified {result.events} events in {result.seals} seals{extra}")
