"""The workspace stop-list page: admins add, remove and import numbers; every change is audited;
numbers are masked for admins without the full-numbers right; other roles and workspaces are refused."""
import io

from extensions import db
from models.recipients import StopListEntry
from services import stoplist
from services.numbers import ctn_hash, mask_number
from tests.factories import make_user, make_workspace


def entries(ws):
    return sorted(db.session.execute(db.select(StopListEntry.number).filter_by(workspace_id=ws.id)).scalars())


def test_admin_adds_and_removes_numbers_with_audit(client, audit_events):
    ws = make_workspace("acme")
    make_user("boss@example.com", workspace=ws, role="admin")
    client.login("boss@example.com")
    page = client.get("/w/acme/stop-list")
    assert page.status_code == 200 and "The stop-list is empty" in page.get_data(as_text=True)
    response = client.post("/w/acme/stop-list", data={"number": "+49 (170) 123-45-67", "reason": "STOP reply"})
    assert response.status_code == 302
    assert entries(ws) == ["491701234567"]
    page = client.get("/w/acme/stop-list").get_data(as_text=True)
    assert mask_number("491701234567") in page and "491701234567" not in page   # masked for this admin
    assert ctn_hash("491701234567", ws.id)[:12] in page
    again = client.post("/w/acme/stop-list", data={"number": "00491701234567"}, follow_redirects=True)
    assert "already on the stop-list" in again.get_data(as_text=True)
    bad = client.post("/w/acme/stop-list", data={"number": "12ab"})
    assert "is not a phone number" in bad.get_data(as_text=True) and entries(ws) == ["491701234567"]
    entry = db.session.execute(db.select(StopListEntry)).scalar_one()
    assert client.post(f"/w/acme/stop-list/{entry.id}/remove").status_code == 302
    assert entries(ws) == []
    actions = [e["action"] for e in audit_events()]
    assert "stoplist.add" in actions and "stoplist.remove" in actions
    added = next(e for e in audit_events() if e["action"] == "stoplist.add")
    assert "491701234567" not in str(added)  # the audit trail stores the masked number and the hash


def test_full_numbers_for_members_with_the_right(client):
    ws = make_workspace("acme")
    make_user("viewer@example.com", workspace=ws, role="admin", can_view_numbers=True)
    stoplist.add(ws, "491701234567")
    client.login("viewer@example.com")
    assert "491701234567" in client.get("/w/acme/stop-list").get_data(as_text=True)
    found = client.get("/w/acme/stop-list?q=%2B49%20170%201234567").get_data(as_text=True)
    assert "491701234567" in found


def test_import_a_file_larger_than_the_form_limit(client, app):
    ws = make_workspace("acme")
    make_user("boss@example.com", workspace=ws, role="admin")
    client.login("boss@example.com")
    lines = [b"number"] + [b"+49 170 %07d" % i for i in range(120_000)] + [b"garbage", b"+49 170 0000001"]
    body = b"\r\n".join(lines)
    assert len(body) > app.config["MAX_CONTENT_LENGTH"]   # the app-wide 1 MB form limit
    stoplist.add(ws, "491700000005")
    response = client.post("/w/acme/stop-list/import", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(body), "optouts.csv"), "reason": "CRM export"},
                           follow_redirects=True)
    text = response.get_data(as_text=True)
    assert response.status_code == 200, text
    assert "119999 added, 2 already on the list, 1 lines were not phone numbers" in text
    assert stoplist.count(ws) == 120_000


def test_other_roles_and_workspaces_are_refused(client, app):
    ws = make_workspace("acme")
    other = make_workspace("other")
    make_user("author@example.com", workspace=ws, role="author")
    make_user("boss@other.example", workspace=other, role="admin")
    entry = stoplist.add(ws, "491701234567")
    client.login("author@example.com")
    assert client.get("/w/acme/stop-list").status_code == 403
    outsider = app.test_client()
    outsider.login("boss@other.example")
    assert outsider.post(f"/w/other/stop-list/{entry.id}/remove").status_code == 404
    assert entries(ws) == ["491701234567"]
    assert stoplist.is_stop_listed(ws.id, "491701234567") and not stoplist.is_stop_listed(other.id, "491701234567")
    assert stoplist.stop_listed_numbers(ws.id, ["491701234567", "491700000000"]) == {"491701234567"}
