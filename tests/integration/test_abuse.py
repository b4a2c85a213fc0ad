"""The abuse corpus (issue 9): hostile uploads, hostile API bodies, and the security headers on
every page an admin can open. Each case must end in a clear refusal (or a job error for content
only the ingest can judge), store no recipient, and never answer 500."""
import gzip
import io
import os
import re
import zipfile

import pytest
from rq import Queue, SimpleWorker

from extensions import db, redis_connection
from models import Campaign, Recipient, Upload
from services import tokens
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace
from tests.integration.test_access_matrix import (  # noqa: F401  (fixtures are used by name)
    _route_table,
    browser,
    build_world,
    fast_password_hashing,
    fill,
)
from tests.integration.test_web_basics import _assert_security_headers

GB = 1024 * 1024 * 1024


@pytest.fixture(autouse=True)
def _clean_queues(app):
    for name in ("uploads", "dispatch"):
        Queue(name, connection=redis_connection()).empty()
    for key in redis_connection().scan_iter("mc:*"):
        redis_connection().delete(key)


def run_jobs():
    queue = Queue("uploads", connection=redis_connection())
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    db.session.expire_all()


@pytest.fixture
def draft(client):
    ws = make_workspace("acme")
    author = make_user("author@example.com", workspace=ws)
    campaign = Campaign(workspace_id=ws.id, author_id=author.id, name="Abuse", mode="OnDemand", status="New")
    db.session.add(campaign)
    db.session.commit()
    _, token = tokens.create_token(author, ws, "abuse")
    client.login(author.email)
    return ws, campaign, {"Authorization": f"Bearer {token}"}


def browser_upload(client, ws, campaign, body, name="list.csv"):
    return client.post(f"/w/{ws.slug}/campaigns/{campaign.id}/recipients", data=body,
                       headers={"X-Filename": name, "X-CSRFToken": client.csrf_token, "Accept": "application/json"},
                       content_type="application/octet-stream")


def stored_numbers(campaign):
    return sorted(db.session.execute(db.select(Recipient.number).filter_by(campaign_id=campaign.id)).scalars())


def zip_bomb():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("numbers.csv", b"0" * (20 * 1024 * 1024))  # 20 MB of zeros, ~20 KB zipped
    return buffer.getvalue()


HOSTILE_CONTENT = {
    "binary": bytes(range(256)) * 64,
    "png renamed .csv": b"\x89PNG\r\n\x1a\n" + os.urandom(4096),
    "zip bomb renamed .csv": zip_bomb(),
    "gzip bomb renamed .csv": gzip.compress(b"1" * (10 * 1024 * 1024)),
    "NUL bytes": b"491701234567\x00\n4917012\x0034568\n\x00\x00\x00\n",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_CONTENT))
def test_hostile_content_stores_no_number_and_never_crashes(client, draft, kind):
    ws, campaign, _ = draft
    response = browser_upload(client, ws, campaign, HOSTILE_CONTENT[kind])
    assert response.status_code in (202, 400, 413, 415, 422), response.status_code
    assert response.is_json and response.status_code != 500
    run_jobs()
    stored = stored_numbers(campaign)
    assert not any("\x00" in n for n in stored)
    if kind != "NUL bytes":
        assert stored == [], f"{kind}: numbers were stored from a non-text file"
    upload = db.session.execute(db.select(Upload)).scalar_one_or_none()
    if upload is not None:
        assert upload.state in ("done", "failed"), upload.state


def test_a_one_megabyte_line_is_a_job_error_and_the_rest_is_read(client, draft):
    ws, campaign, _ = draft
    body = b"491701234567\n" + b"4" * (1024 * 1024) + b"\n491701234568\n"
    assert browser_upload(client, ws, campaign, body).status_code == 202
    run_jobs()
    assert stored_numbers(campaign) == ["491701234567", "491701234568"]


@pytest.mark.parametrize("name", ["../../etc/passwd.csv", "..\\..\\windows\\win.csv", "/etc/cron.d/x.csv",
                                  "C:\\temp\\list.csv", "list.csv\x00.exe", "list.exe", ".htaccess"])
def test_path_like_file_names_never_choose_where_the_file_is_stored(app, client, draft, name):
    ws, campaign, _ = draft
    response = browser_upload(client, ws, campaign, b"491701234567\n", name=name)
    assert response.status_code in (202, 400, 415), response.status_code
    upload = db.session.execute(db.select(Upload)).scalar_one_or_none()
    if response.status_code != 202:
        assert upload is None and response.json["error"]["code"]
        return
    if upload.spool_path.startswith("db:"):   # FILE_STORE=database: a generated id, never a path
        assert re.fullmatch(r"db:spool-[0-9a-f]{32}\.upload", upload.spool_path)
    else:
        spool = os.path.realpath(os.path.join(app.config["MC_DATA_DIR"], "spool"))
        assert os.path.realpath(upload.spool_path).startswith(spool + os.sep)
    assert ".." not in upload.spool_path and "passwd" not in upload.spool_path
    assert "/" not in upload.original_name and "\\" not in upload.original_name


def test_one_gigabyte_and_one_byte_is_refused_before_reading(client, draft):
    ws, campaign, api = draft
    response = client.put(f"/api/v1/campaigns/{campaign.id}/recipients", data=b"491701234567\n",
                          headers={**api, "X-Filename": "big.csv"}, content_type="text/csv",
                          environ_overrides={"CONTENT_LENGTH": str(GB + 1)})
    assert response.status_code == 413 and response.json["error"]["code"] == "too_large"
    from_browser = client.post(f"/w/{ws.slug}/campaigns/{campaign.id}/recipients", data=b"491701234567\n",
                          headers={"X-Filename": "big.csv", "X-CSRFToken": client.csrf_token,
                                   "Accept": "application/json"},
                          content_type="application/octet-stream", environ_overrides={"CONTENT_LENGTH": str(GB + 1)})
    assert from_browser.status_code == 413
    assert db.session.execute(db.select(Upload)).first() is None


# --- the Trigger API -------------------------------------------------------------------------------

@pytest.fixture
def trigger(app):
    ws = make_workspace("otp")
    author = make_user("svc@example.com", workspace=ws)
    campaign = make_campaign(ws, author, mode="Trigger", status="Sending", moderation="approved",
                             sender=make_sender(ws))
    _, token = tokens.create_token(author, ws, "otp service")
    return campaign, {"Authorization": f"Bearer {token}"}


BAD_BODIES = {
    "10k numbers": {"json": {"numbers": [f"4917{i:08d}" for i in range(10_000)]}},
    "oversized JSON": {"data": b'{"numbers": ["' + b"1" * (300 * 1024) + b'"]}', "content_type": "application/json"},
    "numbers is a string": {"json": {"numbers": "491701234567"}},
    "numbers are integers": {"json": {"numbers": [491701234567, 491701234568]}},
    "numbers are objects": {"json": {"numbers": [{"n": "491701234567"}]}},
    "numbers is null": {"json": {"numbers": None}},
    "body is a list": {"json": ["491701234567"]},
    "body is a number": {"json": 7},
    "no numbers key": {"json": {"number": ["491701234567"]}},
    "empty list": {"json": {"numbers": []}},
    "broken JSON": {"data": b'{"numbers": ["4917', "content_type": "application/json"},
    "deeply nested": {"data": b'{"numbers": ' + b"[" * 5000 + b"]" * 5000 + b"}", "content_type": "application/json"},
    "form instead of JSON": {"data": {"numbers": "491701234567"}},
}


# A well-formed list whose items have the wrong type is answered per item (index + reason), as the
# API reports bad numbers; the call itself succeeds with nothing accepted.
PER_ITEM = {"numbers are integers", "numbers are objects"}
KNOWN_BUGS = {}  # case -> reason, for a refusal known to be wrong (strict xfail: passes once fixed)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(reason=KNOWN_BUGS[c], strict=True))
                                  if c in KNOWN_BUGS else c for c in sorted(BAD_BODIES)])
def test_hostile_trigger_bodies_get_a_json_refusal_and_store_nothing(client, trigger, case):
    campaign, headers = trigger
    response = client.post(f"/api/v1/campaigns/{campaign.id}/recipients", headers=headers, **BAD_BODIES[case])
    assert response.is_json, case
    if case in PER_ITEM:
        assert response.status_code == 200 and response.json["accepted"] == 0
        assert {r["reason"] for r in response.json["rejected"]} == {"not a string"}
    else:
        assert 400 <= response.status_code < 500, (case, response.status_code)
        assert response.json["error"]["code"], case
    assert stored_numbers(campaign) == []


# --- headers on every page -------------------------------------------------------------------------

def test_every_get_page_an_admin_opens_carries_the_security_headers(browser):  # noqa: F811
    world = build_world(objects_in_b=False)
    make_user("root@example.com", superadmin=True)
    admin, root = browser(world.emails["admin"]), browser("root@example.com")
    checked, problems = 0, []
    for rule, endpoint, methods, access in _route_table():
        if "GET" not in methods or rule.startswith(("/api/", "/static")) or endpoint == "static":
            continue
        client = root if access in ("superadmin",) else admin
        url, _ = fill(rule, world.a.slug, world.a)
        for base in ("http://mc.test", "https://mc.test"):
            response = client.get(url, base_url=base)
            if response.status_code >= 500:
                problems.append(f"GET {url} -> {response.status_code}")
                continue
            try:
                _assert_security_headers(response)
            except AssertionError as exc:
                problems.append(f"GET {url}: {exc}")
            if base.startswith("https") and "Strict-Transport-Security" not in response.headers:
                problems.append(f"GET {url} over TLS: no HSTS")
            if base.startswith("http:") and "Strict-Transport-Security" in response.headers:
                problems.append(f"GET {url} over plain HTTP sends HSTS")
        checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 20


# --- secrets ---------------------------------------------------------------------------------------

def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path):
    from config import ConfigError, load_config

    with pytest.raises(ConfigError):
        load_config(env={"MC_PRODUCTION": "1", "MC_DATA_DIR": str(tmp_path)})
    assert not os.path.exists(tmp_path / "secret_key"), "no generated default key in production"


def test_tokens_and_codes_are_compared_in_constant_time():
    import inspect

    from services import invitations, secrets, totp
    from services import tokens as api_tokens

    assert "hmac.compare_digest" in inspect.getsource(secrets.matches)
    assert "compare_digest" in inspect.getsource(totp._check_totp)
    for module in (api_tokens, invitations):
        source = inspect.getsource(module)
        assert "secrets.matches" in source or "digest(" in source, module.__name__


def test_every_test_named_in_docs_security_md_exists():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "security.md").read_text(encoding="utf-8")
    missing, current = [], None
    for match in re.finditer(r"`([iu])/(test_\w+\.py)::(\w+)(?:\[[^\]]*\])?`|`::(\w+)`|, `::(\w+)`", doc):
        if match.group(2):
            current = root / "tests" / {"i": "integration", "u": "unit"}[match.group(1)] / match.group(2)
            name = match.group(3)
        else:
            name = match.group(4) or match.group(5)
        if current is None or not current.exists() or f"def {name}(" not in current.read_text(encoding="utf-8"):
            missing.append(f"{current.name if current else '?'}::{name}")
    assert not missing, missing
