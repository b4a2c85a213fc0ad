"""`flask recipients import --campaign ID FILE`: ingest a list already on the server.

Same pipeline as the browser and the API: the file is copied in chunks to the spool (so the
original can change or go away), an Upload row is committed, then the ingest runs — here in this
process with a progress bar (default), or on the `uploads` queue with `--enqueue` (progress is
then followed by polling the Upload row).
"""
import os
import time

import click
from flask.cli import AppGroup

from extensions import db
from models import Campaign
from models.recipients import Upload
from models.states import UploadState
from services import recipients
from services.errors import DomainError

recipients_cli = AppGroup("recipients", help="Recipient lists.")


def _line(status):
    return (f"{status['percent']:3d}%  {status['lines']:,} lines  {status['accepted']:,} accepted  "
            f"{status['duplicates']:,} duplicates  {status['rejected']:,} rejected  "
            f"{status['stop_listed']:,} stop-listed")


@recipients_cli.command("import")
@click.option("--campaign", "campaign_id", type=int, required=True, help="Campaign id (must be a draft).")
@click.option("--enqueue", is_flag=True, help="Run the ingest on an `rq worker` instead of in this process.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True))
def import_recipients(campaign_id, enqueue, path):
    """Import recipients from FILE (.csv or .txt, up to 1 GB) into a draft campaign."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise click.ClickException(f"No campaign {campaign_id}.")
    try:
        recipients.ensure_may_upload(campaign)
        name = recipients.check_filename(os.path.basename(path))
        with open(path, "rb") as fh:
            spool, size = recipients.spool_stream(fh, recipients.api_limit())
        upload = recipients.start_upload(campaign, spool_path=spool, size=size, source="cli", original_name=name)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Upload {upload.id}: {size:,} bytes for campaign {campaign.id} “{campaign.name}”.")

    def show(status):
        click.echo("\r" + _line(status), nl=False)

    if enqueue:
        recipients.enqueue_ingest(upload)
        click.echo("Queued on `uploads`; following progress (Ctrl-C stops following, not the job).")
        while True:
            db.session.expire_all()
            upload = db.session.get_one(Upload, upload.id)
            show(recipients.upload_status(upload, errors_limit=0))
            if upload.state in (UploadState.DONE, UploadState.FAILED):
                break
            time.sleep(1)
    else:
        upload = recipients.ingest(upload.id, on_progress=show)
        show(recipients.upload_status(upload, errors_limit=0))
    click.echo("")
    status = recipients.upload_status(upload, errors_limit=10, may_view_full=True)  # an operator on the server
    for error in status["errors"]:
        click.echo(f"  line {error['line'] if error['line'] is not None else '-'}: {error['reason']}"
                   + (f"  [{error['text']}]" if error["text"] else ""))
    if status["rejected"] > len(status["errors"]):
        click.echo(f"  … {status['rejected'] - len(status['errors']):,} more rejected lines (campaign Job errors tab).")
    if upload.state == UploadState.FAILED:
        raise click.ClickException(f"Import failed: {upload.error}")
    click.echo(f"Done: campaign {campaign_id} now has {db.session.get_one(Campaign, campaign_id).recipients_count:,} "
               "recipients.")
