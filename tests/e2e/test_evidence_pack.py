"""Evidence pack in a real browser against the real processes (issue 21): a moderator builds the
pack from the campaign page, the worker builds it, the browser downloads the ZIP, whose SHA-256 is
the one the page shows and whose manifest checks out like `sha256sum -c`; an author sees no button;
then `flask audit seal` and `flask audit verify` on the running installation say "verified".

The set-up (workspace, people, an approved sender and a draft campaign) goes through the CLI and
the JSON API; the scenario itself is the browser's. Screenshots: artifacts/e2e/evidence/.
"""
import hashlib
import io
import json
import re
import time
import zipfile

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import Shots, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLUG = "evidence-e2e"
PASSWORD = "evidence e2e passphrase 2024"
AUTHOR, MODERATOR = "ed.author@e2e.example.org", "eve.moderator@e2e.example.org"


def _api(stack, token):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def call(method, path, **kwargs):
        response = session.request(method, stack.base_url + "/api/v1" + path, timeout=30, **kwargs)
        assert response.status_code < 300, (path, response.status_code, response.text[:500])
        return response.json()

    return call


def test_moderator_downloads_an_evidence_pack(stack, new_context):
    shot = Shots("evidence")
    stack.flask("workspaces", "create", "--slug", SLUG, "--name", "Evidence Ltd")
    stack.flask("users", "create", "--email", AUTHOR, "--password", PASSWORD, "--workspace", SLUG, "--role", "author")
    stack.flask("users", "create", "--email", MODERATOR, "--password", PASSWORD, "--workspace", SLUG,
                "--role", "moderator")
    author_api = _api(stack, stack.flask("tokens", "create", "--email", AUTHOR, "--workspace", SLUG).strip())
    mod_api = _api(stack, stack.flask("tokens", "create", "--email", MODERATOR, "--workspace", SLUG).strip())
    sender = author_api("POST", "/sender-names", json={"name": "Evidence", "saddr": "EVIDENCE"})
    revision_id = sender["open_revision"]["id"]
    mod_api("POST", f"/moderation/sender_revision/{revision_id}/approve")
    campaign = author_api("POST", "/campaigns", json={"name": "Pack me", "mode": "OnDemand",
                                                      "sender_revision_id": revision_id,
                                                      "text": "Evidence e2e message"})

    author = new_context().new_page()
    sign_in(author, AUTHOR, PASSWORD)
    author.goto(f"/w/{SLUG}/campaigns/{campaign['id']}")
    expect(author.get_by_role("heading", name="Pack me")).to_be_visible()
    expect(author.get_by_role("button", name="Build evidence pack")).to_have_count(0)

    mod = new_context().new_page()
    sign_in(mod, MODERATOR, PASSWORD)
    mod.goto(f"/w/{SLUG}/campaigns/{campaign['id']}")
    mod.get_by_role("button", name="Build evidence pack").click()
    expect(mod.locator(".flashes .flash").first).to_contain_text("is queued")
    deadline = time.time() + 90
    while mod.get_by_role("link", name="Download ZIP").count() == 0:
        assert time.time() < deadline, "the evidence pack was not built within 90 s"
        time.sleep(1)
        mod.reload()
    shot(mod, "evidence-ready")
    shown = mod.locator("code.hash").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", shown)
    with mod.expect_download() as info:
        mod.get_by_role("link", name="Download ZIP").click()
    download = info.value
    assert download.suggested_filename == re.sub(r".*/", "", download.suggested_filename)
    assert download.suggested_filename.endswith(".zip")
    data = open(download.path(), "rb").read()
    assert hashlib.sha256(data).hexdigest() == shown
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    sums = files["SHA256SUMS"].decode().splitlines()
    assert len(sums) == len(files) - 1
    for line in sums:  # what `sha256sum -c SHA256SUMS` does after unzipping
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(files[name]).hexdigest() == digest, f"{name}: FAILED"
    manifest = json.loads(files["manifest.json"])
    assert manifest["campaign_id"] == campaign["id"] and manifest["numbers"] == "masked"
    assert manifest["requested_by"]["email"] == MODERATOR
    events = [json.loads(line) for line in files["audit-events.jsonl"].decode().splitlines()]
    assert "campaigns.created" in {e["action"] for e in events}
    assert "evidence.requested" in {e["action"] for e in events}

    # The running installation's audit trail seals and verifies.
    stack.flask("audit", "seal")
    assert re.search(r"verified \d+ events in \d+ seals", stack.flask("audit", "verify"))
    stack.check_alive()
