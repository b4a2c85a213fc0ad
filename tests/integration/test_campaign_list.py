"""The campaigns list: filters, sorting, archived handling, who sees what, pagination bounds, and a
fixed number of SQL statements per page whatever the number of rows (no N+1)."""
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from extensions import db
from models import Campaign, utcnow
from services import campaign_queries as queries
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def ws():
    return make_workspace("acme")


@pytest.fixture
def people(ws):
    return {"author": make_user("author@example.com", workspace=ws, role="author"),
            "other": make_user("other@example.com", workspace=ws, role="author"),
            "mod": make_user("mod@example.com", workspace=ws, role="moderator")}


LAST = []


@contextmanager
def count_statements():
    statements = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)


def _ids(client, query=""):
    from html.parser import HTMLParser

    html = client.get(f"/w/acme/campaigns{query}").get_data(as_text=True)
    ids = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            href = dict(attrs).get("href") or ""
            if tag == "a" and href.startswith("/w/acme/campaigns/") and href.count("/") == 4 \
                    and href.rsplit("/", 1)[1].isdigit():
                ids.append(int(href.rsplit("/", 1)[1]))

    Rows().feed(html)
    return ids


def test_authors_see_their_own_moderators_see_all(client, ws, people):
    mine = make_campaign(ws, people["author"], sender=make_sender(ws, "MINE"))
    theirs = make_campaign(ws, people["other"], sender=make_sender(ws, "THEIRS"))
    client.login("author@example.com")
    assert _ids(client) == [mine.id]
    mod = client.application.test_client()
    mod.login("mod@example.com")
    assert set(_ids(mod)) == {mine.id, theirs.id}
    foreign = make_workspace("beta")
    make_campaign(foreign, make_user(workspace=foreign))
    assert set(_ids(mod)) == {mine.id, theirs.id}


def test_filters_status_mode_period_and_search(client, ws, people):
    a = people["author"]
    acme = make_sender(ws, "ACME")
    c1 = make_campaign(ws, a, sender=acme, status="Pending", recipients=0)
    c2 = make_campaign(ws, a, sender=make_sender(ws, "BETAINFO"), mode="OnTime")
    c3 = make_campaign(ws, a, sender=acme, mode="Trigger", status="Sending", moderation="approved")
    db.session.execute(update(Campaign).where(Campaign.id == c3.id).values(created_at=utcnow() - timedelta(days=40)))
    db.session.commit()
    client.login("author@example.com")
    assert _ids(client, "?status=Pending") == [c1.id]
    assert _ids(client, "?mode=OnTime") == [c2.id]
    assert _ids(client, "?mode=Trigger&status=Sending") == [c3.id]
    since = (utcnow() - timedelta(days=2)).date().isoformat()
    assert set(_ids(client, f"?from={since}")) == {c1.id, c2.id}
    until = (utcnow() - timedelta(days=30)).date().isoformat()
    assert _ids(client, f"?to={until}") == [c3.id]
    assert set(_ids(client, "?q=acm")) == {c1.id, c3.id}          # sender (SADDR), case-insensitive
    assert _ids(client, f"?q={c2.id}") == [c2.id]                   # by ID
    assert _ids(client, f"?q=%23{c2.id}") == [c2.id]                # "#12" works too
    page = client.get("/w/acme/campaigns?from=nonsense&status=Bogus").get_data(as_text=True)
    assert "is not a date" in page and "Unknown status" in page


def test_archived_hidden_unless_asked(client, ws, people):
    live = make_campaign(ws, people["author"])
    gone = make_campaign(ws, people["author"], status="Done", archived=True)
    client.login("author@example.com")
    assert _ids(client) == [live.id]
    assert _ids(client, "?archived=1") == [gone.id]
    assert set(_ids(client, "?archived=all")) == {live.id, gone.id}


def test_sorting_by_sender_start_and_created(client, ws, people):
    a = people["author"]
    now = utcnow()
    b = make_campaign(ws, a, sender=make_sender(ws, "BRAVO"), mode="OnTime", start_at=now + timedelta(days=3))
    c = make_campaign(ws, a, sender=make_sender(ws, "CHARLIE"), mode="OnTime", start_at=now + timedelta(days=1))
    x = make_campaign(ws, a, sender=make_sender(ws, "ALPHA"), status="Sending", moderation="approved",
                      started_at=now - timedelta(days=1))
    draft = make_campaign(ws, a)                                    # no sender, no start yet
    client.login("author@example.com")
    assert _ids(client, "?sort=sender&dir=asc") == [x.id, b.id, c.id, draft.id]
    assert _ids(client, "?sort=sender&dir=desc") == [draft.id, c.id, b.id, x.id]
    assert _ids(client, "?sort=start&dir=asc") == [x.id, c.id, b.id, draft.id]
    assert _ids(client, "?sort=created&dir=asc") == [b.id, c.id, x.id, draft.id]
    assert _ids(client) == [draft.id, x.id, c.id, b.id]             # newest first by default
    html = client.get("/w/acme/campaigns?sort=sender&dir=asc").get_data(as_text=True)
    assert 'aria-sort="ascending"' in html and "sort=sender&amp;dir=desc" in html


def test_pagination_is_bounded(client, ws, people, monkeypatch):
    for _ in range(7):
        make_campaign(ws, people["author"])
    monkeypatch.setattr(queries, "PAGE_SIZE", 3)
    client.login("author@example.com")
    first, second, third = (_ids(client, f"?page={n}") for n in (1, 2, 3))
    assert len(first) == 3 and len(second) == 3 and len(third) == 1
    assert not set(first) & set(second)
    assert "Next →" in client.get("/w/acme/campaigns?page=1").get_data(as_text=True)
    too_far = client.get(f"/w/acme/campaigns?page={queries.MAX_PAGES + 1}").get_data(as_text=True)
    assert "narrow the period" in too_far


@pytest.mark.parametrize("viewer", ["author", "mod"])
def test_query_count_does_not_grow_with_rows(client, app, ws, people, viewer):
    filters = queries.parse_filters({"sort": "sender"})
    user = people[viewer]

    def page_statements():
        db.session.expire_all()
        membership, _superadmin, _workspace_id = user.membership_in(ws.id), user.is_superadmin, ws.id
        with count_statements() as statements:
            rows, _ = queries.list_campaigns(ws, membership, user, filters)
            for row in rows:   # what the template touches
                _ = (row.author.email if row.author else None, row.saddr, row.status, row.delivered_count)
        LAST[:] = statements
        return len(statements), len(rows)

    sender = make_sender(ws)
    make_campaign(ws, people["author"], sender=sender)
    small = page_statements()
    for n in range(30):
        make_campaign(ws, people["author" if n % 2 else "other"], sender=make_sender(ws, f"S{n}"))
    large = page_statements()
    assert large[1] > small[1]
    assert small[0] == large[0] == 1, (small, large, LAST)  # one SELECT: campaigns + their authors

    client.login(user.email)
    with count_statements() as few:
        client.get("/w/acme/campaigns")
    for n in range(20):
        make_campaign(ws, people["author"], sender=sender)
    with count_statements() as many:
        client.get("/w/acme/campaigns")
    assert len(many) == len(few), (len(few), len(many))
