"""Masking that holds (issue 14 item 5), tried as an attacker would.

Without `numbers.view_full`: a number search is refused with the same answer whether the number
exists or not (page and API), a hash prefix works; job errors' raw lines are masked on the page,
in the upload status (page JSON, wizard widget, API) and nothing unmasked reaches an export.
`ctn_hash` is keyed per workspace on every path that computes it (ingest, Trigger API, CLI
import, stop-list add and import): the same number has unrelated hashes in two workspaces, so a
hash table built in one matches nothing in the other.
"""
import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from rq import Queue, SimpleWorker

from extensions import db, redis_connection
from models import Recipient, StopListEntry, User
from models.exports import Export
from services import stoplist, tokens, trigger
from services.numbers import ctn_hash, hash_key, mask_number, mask_text
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace

KNOWN, UNKNOWN = "491701234567", "491709876543"
GUESSES = ("+49 170 1234567", KNOWN, "0049-170-1234567", "(49) 170/123.45.67", "1234567", "4917",
           "170123", "123456789012345", "٤٩١٧٠١٢٣٤٥٦٧", "+", "x" * 5000)


@pytest.fixture(autouse=True)
def _empty_queues():
    for name in ("uploads", "exports"):
        Queue(name, connection=redis_connection()).empty()
    yield


def run_jobs(*names):
    queues = [Queue(name, connection=redis_connection()) for name in names]
    SimpleWorker(queues, connection=redis_connection()).work(burst=True)
    db.session.expire_all()


@pytest.fixture
def acme(app):
    ws = make_workspace("acme")
    author = make_user("author@acme.test", workspace=ws, role="author")
    make_user("mod@acme.test", workspace=ws, role="moderator")
    make_user("viewer@acme.test", workspace=ws, role="moderator", can_view_numbers=True)
    campaign = make_campaign(ws, author, status="Pending", moderation="awaiting", sender=make_sender(ws))
    add_recipients(campaign, [KNOWN, "491700000001", "491700000002"])
    return ws, campaign


def bearer(email, ws):
    user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
    _, token = tokens.create_token(user, ws, "masking test")
    return {"Authorization": f"Bearer {token}"}


def _visible(html, query=""):
    """What a page shows, without the per-request parts (CSRF token, CSP nonce, request id) and
    the searcher's own query echoed in the search box."""
    html = re.sub(r'name="csrf_token"[^>]*value="[^"]+"', "", html)
    html = re.sub(r'request <code>[0-9a-f]+</code>', "", html)
    html = re.sub(r'nonce="[^"]+"', "", html)
    return html.replace(query, "QUERY") if query else html


def signed_in(app, email):
    """A browser of its own for each person (signing in again on one client keeps the first user)."""
    browser = app.test_client()
    browser.login(email)
    return browser


# --- search ----------------------------------------------------------------------------------------

def test_moderator_without_the_right_gets_one_refusal_whether_the_number_exists_or_not(client, acme):
    ws, campaign = acme
    client.login("mod@acme.test")
    url = f"/w/acme/campaigns/{campaign.id}?tab=recipients&q="
    known, unknown = client.get(url + KNOWN), client.get(url + UNKNOWN)
    assert known.status_code == unknown.status_code == 200
    assert _visible(known.get_data(as_text=True), KNOWN) == _visible(unknown.get_data(as_text=True), UNKNOWN)
    page = _visible(known.get_data(as_text=True), KNOWN)
    assert "Search by hash" in page and "view numbers" in page
    assert "Nothing was searched" in page and "No recipient matches" not in page  # a refusal, not a miss
    assert mask_number(KNOWN) not in page and "567" not in page


def test_api_refuses_every_number_like_search_with_the_same_error(app, acme):
    ws, campaign = acme
    api = app.test_client()
    headers = bearer("mod@acme.test", ws)
    answers = set()
    for q in GUESSES + (UNKNOWN,):
        response = api.get(f"/api/v1/campaigns/{campaign.id}/recipients", query_string={"q": q}, headers=headers)
        assert response.status_code == 400, q
        body = response.get_json()
        assert body["error"]["code"] == "hash_search_only"
        answers.add(response.get_data())
    assert len(answers) == 1   # not one byte differs between a hit, a miss and nonsense


def test_thirty_parallel_guesses_all_get_the_refusal(app, acme):
    """A burst of guesses (half of them right) changes nothing and every one is refused alike."""
    ws, campaign = acme
    headers = bearer("mod@acme.test", ws)
    guesses = [KNOWN if i % 2 else f"4917{i:08d}" for i in range(30)]

    def ask(q):
        with app.app_context():
            response = app.test_client().get(f"/api/v1/campaigns/{campaign.id}/recipients", query_string={"q": q},
                               headers=headers)
            return response.status_code, response.get_data()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(ask, guesses))
    assert {status for status, _ in results} == {400}
    assert len({body for _, body in results}) == 1


def test_a_hash_prefix_works_without_the_right_and_numbers_stay_masked(app, client, acme):
    ws, campaign = acme
    digest = ctn_hash(KNOWN, ws.id)
    prefix = next(digest[:n] for n in range(6, 65) if not digest[:n].isdigit())
    client.login("mod@acme.test")
    page = client.get(f"/w/acme/campaigns/{campaign.id}?tab=recipients&q={prefix}").get_data(as_text=True)
    assert mask_number(KNOWN) in page and KNOWN not in page and digest[:12] in page
    data = app.test_client().get(f"/api/v1/campaigns/{campaign.id}/recipients", query_string={"q": digest.upper()},
                                 headers=bearer("mod@acme.test", ws)).get_json()
    assert [r["number"] for r in data["recipients"]] == [mask_number(KNOWN)] and data["masked"]
    # A prefix of digits only is accepted once it is longer than any phone number.
    digits_only = "1234567890123456"
    response = app.test_client().get(f"/api/v1/campaigns/{campaign.id}/recipients",
                                     query_string={"q": digits_only}, headers=bearer("mod@acme.test", ws))
    assert response.status_code == 200 and response.get_json()["recipients"] == []


def test_with_the_right_a_full_number_search_keeps_working(app, client, acme):
    ws, campaign = acme
    client.login("viewer@acme.test")
    page = client.get(f"/w/acme/campaigns/{campaign.id}?tab=recipients&q=%2B49 170 1234567").get_data(as_text=True)
    assert f'<code class="number">{KNOWN}</code>' in page
    data = app.test_client().get(f"/api/v1/campaigns/{campaign.id}/recipients", query_string={"q": "0049 170 1234567"},
                                 headers=bearer("viewer@acme.test", ws)).get_json()
    assert [r["number"] for r in data["recipients"]] == [KNOWN] and not data["masked"]
    bad = app.test_client().get(f"/api/v1/campaigns/{campaign.id}/recipients", query_string={"q": "12ab"},
                                headers=bearer("viewer@acme.test", ws))
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_search"


def test_stop_list_search_follows_the_same_rule(client, acme):
    ws, _ = acme
    make_user("admin@acme.test", workspace=ws, role="admin")
    stoplist.add(ws, KNOWN, "STOP")
    client.login("admin@acme.test")
    known = client.get(f"/w/acme/stop-list?q={KNOWN}").get_data(as_text=True)
    unknown = client.get(f"/w/acme/stop-list?q={UNKNOWN}").get_data(as_text=True)
    assert "Search by hash" in known and mask_number(KNOWN) not in known
    assert _visible(known, KNOWN) == _visible(unknown, UNKNOWN)
    by_hash = client.get(f"/w/acme/stop-list?q={ctn_hash(KNOWN, ws.id)[:16]}").get_data(as_text=True)
    assert mask_number(KNOWN) in by_hash


# --- job errors ------------------------------------------------------------------------------------

BAD_LINES = [
    ("+49 170 1234567x", "1234567"),            # letters: not a number
    ("4917012345678901234", "78901234"),        # too long
    ("49170 12 34 567 abc", "1234"),            # separators inside a number with text
    ("٤٩١٧٠١٢٣٤٥٦٧", "٤٩١٧٠١٢٣٤"),          # Arabic-Indic digits
    ("4917012x34567", "34567"),                 # a letter splitting the digits
]


@pytest.fixture
def uploaded(app, client):
    """A draft whose uploaded list had bad lines holding numbers (through the real ingest job)."""
    ws = make_workspace("acme")
    author = make_user("author@acme.test", workspace=ws, role="author")
    make_user("mod@acme.test", workspace=ws, role="moderator")
    make_user("viewer@acme.test", workspace=ws, role="moderator", can_view_numbers=True)
    campaign = make_campaign(ws, author, sender=make_sender(ws), wizard_step=4)
    client.login("author@acme.test")
    body = "phone\n491700000001\n" + "".join(line + "\n" for line, _ in BAD_LINES) + "491700000002\n"
    response = client.post(f"/w/acme/campaigns/{campaign.id}/recipients", data=body.encode(),
                           headers={"X-Filename": "list.csv", "Accept": "application/json",
                                    "X-CSRFToken": client.csrf_token}, content_type="text/csv")
    assert response.status_code == 202, response.get_data(as_text=True)
    upload_id = response.get_json()["id"]
    run_jobs("uploads")
    return ws, campaign, upload_id


def _leaks(text):
    return [secret for _, secret in BAD_LINES if secret in text]


def test_job_errors_are_masked_on_the_page_in_the_status_json_and_in_the_api(app, client, uploaded):
    ws, campaign, upload_id = uploaded
    for email in ("author@acme.test", "mod@acme.test"):
        client = signed_in(app, email)
        page = client.get(f"/w/acme/campaigns/{campaign.id}?tab=job-errors").get_data(as_text=True)
        assert "too long" in page and not _leaks(page), email
        status = client.get(f"/w/acme/uploads/{upload_id}/status").get_data(as_text=True)
        assert '"rejected":5' in status.replace(" ", "") and not _leaks(status)
        api = app.test_client().get(f"/api/v1/uploads/{upload_id}?errors=100", headers=bearer(email, ws))
        errors = api.get_json()["errors"]
        assert len(errors) == 5 and not _leaks(api.get_data(as_text=True))
        assert errors[1]["text"] == mask_text("4917012345678901234") == "•" * 16 + "234"
    client = signed_in(app, "author@acme.test")
    wizard = client.get(f"/w/acme/campaigns/{campaign.id}/wizard/4")
    assert wizard.status_code == 200 and "too long" in wizard.get_data(as_text=True)
    assert not _leaks(wizard.get_data(as_text=True))


def test_a_number_viewer_reads_the_raw_lines(app, client, uploaded):
    ws, campaign, upload_id = uploaded
    client = signed_in(app, "viewer@acme.test")
    page = client.get(f"/w/acme/campaigns/{campaign.id}?tab=job-errors").get_data(as_text=True)
    assert "4917012345678901234" in page and "+49 170 1234567x" in page
    errors = app.test_client().get(f"/api/v1/uploads/{upload_id}?errors=100",
                                   headers=bearer("viewer@acme.test", ws)).get_json()["errors"]
    assert [e["text"].lstrip("'") for e in errors] == [line for line, _ in BAD_LINES]   # ' : formula-safe


def test_an_export_by_a_member_without_the_right_holds_no_full_number(app, client, uploaded):
    ws, campaign, _ = uploaded
    client = signed_in(app, "mod@acme.test")
    assert client.post(f"/w/acme/campaigns/{campaign.id}/exports", data={"format": "csv"}).status_code == 302
    run_jobs("exports")
    export = db.session.scalars(db.select(Export).order_by(Export.id.desc())).first()
    assert export.state == "done" and not export.unmasked
    body = client.get(f"/w/acme/exports/{export.id}/download").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body)))
    assert [r[0] for r in rows[1:]] == [mask_number("491700000001"), mask_number("491700000002")]
    assert not _leaks(body) and not re.search(r"\d{4}", body.split("\n", 1)[1].split(",")[0])


@pytest.mark.parametrize("text, expected", [
    ("491701234567", "•••••••••567"),
    ("+49 (170) 123-45-67", "+•• (•••) •••-•5-67"),
    ("line 12, 2024", "line 12, 2024"),                           # short runs stay
    ("Ann;491701234567;Berlin 10115", "Ann;•••••••••567;Berlin 10115"),
    ("123456;abcd;7654321", "123456;abcd;••••321"),
    ("123456;x;7654321", "••••••;x;••••321"),                     # 3 characters apart: one run
    (None, None), ("", ""),
])
def test_mask_text(text, expected):
    assert mask_text(text) == expected


def test_mask_text_leaves_no_number_readable_in_any_layout():
    number = "491701234567"
    separators = ["", " ", "-", ".", "/", "(", ")", " - ", "x", "\t", "  "]
    for sep in separators:
        for split in range(1, len(number)):
            line = f"name;{number[:split]}{sep}{number[split:]};more"
            digits = "".join(re.findall(r"\d", mask_text(line)))
            assert digits == number[-3:], (line, mask_text(line))


# --- ctn_hash per workspace --------------------------------------------------------------------------

def test_the_same_number_has_different_hashes_in_two_workspaces_on_every_path(app, client, tmp_path):
    """Browser/API ingest (COPY on PostgreSQL, batches on SQLite), the CLI import, Trigger pushes,
    stop-list add and import: each stores its workspace's hash."""
    hashes = {}
    for slug in ("alpha", "bravo"):
        ws = make_workspace(slug)
        author = make_user(f"author@{slug}.test", workspace=ws, role="author")
        sender = make_sender(ws)
        uploaded = make_campaign(ws, author, sender=sender, wizard_step=4)
        client = signed_in(app, f"author@{slug}.test")
        response = client.post(f"/w/{slug}/campaigns/{uploaded.id}/recipients", data=f"{KNOWN}\n".encode(),
                               headers={"X-Filename": "l.csv", "Accept": "application/json",
                                        "X-CSRFToken": client.csrf_token}, content_type="text/csv")
        assert response.status_code == 202
        run_jobs("uploads")
        cli_campaign = make_campaign(ws, author, sender=sender)
        path = tmp_path / f"{slug}.csv"
        path.write_text(f"{KNOWN}\n")
        result = app.test_cli_runner().invoke(args=["recipients", "import", "--campaign", str(cli_campaign.id),
                                                    str(path)])
        assert result.exit_code == 0, result.output
        otp = make_campaign(ws, author, mode="Trigger", status="Sending", moderation="approved", sender=sender)
        assert trigger.push_numbers(otp, [KNOWN])["accepted"] == 1
        stoplist.import_lines(ws, [f"{UNKNOWN}\n"])
        stoplist.add(ws, KNOWN)
        stored = {campaign_id: h for campaign_id, h in db.session.execute(
            db.select(Recipient.campaign_id, Recipient.ctn_hash).where(Recipient.number == KNOWN))}
        stop = dict(db.session.execute(db.select(StopListEntry.number, StopListEntry.ctn_hash)
                                       .filter_by(workspace_id=ws.id)).all())
        paths = {"ingest": stored[uploaded.id], "cli": stored[cli_campaign.id], "trigger": stored[otp.id],
                 "stop-list add": stop[KNOWN], "stop-list import": ctn_hash(KNOWN, ws.id) if stop[UNKNOWN] ==
                 ctn_hash(UNKNOWN, ws.id) else "wrong"}
        assert set(paths.values()) == {ctn_hash(KNOWN, ws.id)}, paths
        hashes[slug] = ctn_hash(KNOWN, ws.id)
    assert hashes["alpha"] != hashes["bravo"]


def test_a_hash_table_built_in_one_workspace_matches_nothing_in_another(app):
    """A number viewer of workspace A maps hashes to numbers for A's whole list; not one hash of
    workspace B (same numbers) is found in that table — and B's key cannot be had from A's."""
    numbers = [f"4917{i:08d}" for i in range(2_000)]
    alpha, bravo = make_workspace("alpha"), make_workspace("bravo")
    a = make_campaign(alpha, make_user("a@alpha.test", workspace=alpha, role="author"))
    b = make_campaign(bravo, make_user("b@bravo.test", workspace=bravo, role="author"))
    add_recipients(a, numbers)
    add_recipients(b, numbers)
    table = dict(db.session.execute(db.select(Recipient.ctn_hash, Recipient.number).filter_by(campaign_id=a.id)).all())
    assert len(table) == 2_000
    seen_in_b = set(db.session.execute(db.select(Recipient.ctn_hash).filter_by(campaign_id=b.id)).scalars())
    assert len(seen_in_b) == 2_000 and not (seen_in_b & set(table))
    assert not {h[:12] for h in seen_in_b} & {h[:12] for h in table}   # not even the shown prefixes
    assert hash_key(alpha.id) != hash_key(bravo.id)
