from tests.factories import make_user, make_workspace


def test_admin_signs_in_and_sees_members(client):
    ws = make_workspace("acme")
    make_user("boss@example.com", workspace=ws, role="admin")
    response = client.login("boss@example.com")
    assert response.status_code == 302
    page = client.get("/w/acme/members")
    assert page.status_code == 200
    assert "boss@example.com" in page.get_data(as_text=True)
