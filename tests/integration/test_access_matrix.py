from tests.factories import make_user, make_workspace

def test_exp(client, app):
    ws = make_workspace("acme")
    make_user("boss@example.com", workspace=ws, role="admin")
    client.login("boss@example.com")
    print("token", client.csrf_token)
    r = client.post("/w/acme/invitations", data={"email": "x@example.com", "role": "author"})
    print(r.status_code, r.headers.get("Location"))
    for rule in app.url_map.iter_rules():
        print(rule.rule, rule.endpoint, sorted(rule.methods), rule.arguments, getattr(app.view_functions[rule.endpoint], "_access", None))
