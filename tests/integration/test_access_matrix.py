from tests.factories import make_user, make_workspace

def test_exp(client, app):
    ws = make_workspace("acme")
    make_user("boss@example.com", workspace=ws, role="admin")
    make_user("au@example.com", workspace=ws, role="author")
    client.login("boss@example.com")
    other = app.test_client()
    r = other.get("/w/acme/members")
    print("anon", r.status_code)
    other.login("au@example.com")
    r = other.get("/w/acme/members")
    print("author", r.status_code)
    r = client.get("/w/acme/members")
    print("admin", r.status_code)
