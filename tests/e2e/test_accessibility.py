"""Accessibility (issue 10, item 2): every main page, as super admin, workspace admin and author,
checked with axe-core (tests/e2e/vendor/axe.min.js, injected by Playwright — the portal never
serves it) for WCAG 2.x A/AA and best-practice rules. A `serious` or `critical` violation fails;
the full report (every impact) goes to artifacts/e2e/axe/report.json and report.txt.

The app's CSP forbids inline script, so only these browser contexts bypass CSP (`bypass_csp=True`)
to inject axe; the scenario test runs with the real CSP.

KNOWN lists the axe rules whose violations were already reported to the app's owners, with the
pages where they showed up; while such a violation is present and nothing else is, the test is an
expected failure that names them. Whether a card overflows depends on the data on the page, so a
known rule is accepted on any page.
"""
import json
import os
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, ARTIFACTS, Shots, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AXE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor", "axe.min.js")
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
BLOCKING = {"serious", "critical"}
SLUG = "a11y"
PASSWORD = "accessibility check passphrase"

# Rule id -> where it was seen and why; reported to the app's owners, not fixed yet. Empty when none are open.
KNOWN = {}


def run_axe(page):
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=AXE)
    return page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
            nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(' '), html: n.html.slice(0, 200),
                                               summary: n.failureSummary}))}));
    }""", TAGS)


class Audit:
    def __init__(self):
        self.shots = Shots("axe")
        self.results = {}

    def check(self, page, key):
        page.wait_for_load_state("load")
        self.results[key] = {"url": page.url, "violations": run_axe(page)}
        self.shots(page, re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-"))

    def blocking(self):
        return [(key, v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]])
                for key, r in self.results.items() for v in r["violations"] if v["impact"] in BLOCKING]

    def write(self):
        folder = os.path.join(ARTIFACTS, "axe")
        with open(os.path.join(folder, "report.json"), "w", encoding="utf-8") as fh:
            json.dump(self.results, fh, indent=2, ensure_ascii=False)
        with open(os.path.join(folder, "report.txt"), "w", encoding="utf-8") as fh:
            for key, r in self.results.items():
                fh.write(f"{key}  {r['url']}\n")
                for v in r["violations"]:
                    fh.write(f"  [{v['impact']}] {v['id']}: {v['help']}\n")
                    for n in v["nodes"]:
                        fh.write(f"      {n['target']}  {n['html'][:120]}\n")


@pytest.fixture(scope="module")
def a11y_workspace(stack):
    stack.flask("workspaces", "create", "--slug", SLUG, "--name", "Accessibility", "--sending-window", "00:00-24:00")
    for email, role in (("wendy.admin@a11y.example.org", "admin"), ("arthur.author@a11y.example.org", "author")):
        stack.flask("users", "create", "--email", email, "--password", PASSWORD, "--workspace", SLUG, "--role", role)
    return {"admin": "wendy.admin@a11y.example.org", "author": "arthur.author@a11y.example.org"}


def test_pages_have_no_serious_axe_violations(stack, new_context, a11y_workspace, tmp_path):
    audit = Audit()
    w = f"/w/{SLUG}"

    anonymous = new_context(bypass_csp=True).new_page()
    for key, path in (("anonymous /login", "/login"), ("anonymous invalid invitation", "/invite/not-a-token")):
        anonymous.goto(path)
        audit.check(anonymous, key)

    # Author: proposes a sender name (sender pages), builds a draft through the wizard (every step).
    author = new_context(bypass_csp=True).new_page()
    sign_in(author, a11y_workspace["author"], PASSWORD)
    for key, path in (("author overview", f"{w}/"), ("author campaigns", f"{w}/campaigns"),
                      ("author senders", f"{w}/senders"), ("author tokens", f"{w}/tokens"),
                      ("author account", "/account"), ("author join", "/join")):
        author.goto(path)
        audit.check(author, key)
    author.goto(f"{w}/senders")
    propose = author.locator("form", has=author.get_by_label("SADDR"))
    propose.get_by_label("Name", exact=True).fill("Accessible")
    propose.get_by_label("SADDR").fill("ACCESS")
    propose.get_by_role("button", name="Submit for approval").click()
    expect(author.locator(".flashes")).to_contain_text("waiting for a moderator")
    audit.check(author, "author sender detail")

    # Workspace admin: every workspace page; approves the sender name in the queue.
    admin = new_context(bypass_csp=True).new_page()
    sign_in(admin, a11y_workspace["admin"], PASSWORD)
    for key, path in (("admin overview", f"{w}/"), ("admin campaigns", f"{w}/campaigns"),
                      ("admin senders", f"{w}/senders"), ("admin moderation campaigns", f"{w}/moderation?tab=campaigns"),
                      ("admin moderation senders", f"{w}/moderation?tab=senders"), ("admin members", f"{w}/members"),
                      ("admin outbox", f"{w}/outbox"), ("admin stop-list", f"{w}/stop-list"),
                      ("admin audit log", f"{w}/audit"), ("admin tokens", f"{w}/tokens"),
                      ("admin monitoring", f"{w}/monitoring"), ("admin diagnostics", f"{w}/diagnostics"),
                      ("admin settings", f"{w}/settings")):
        admin.goto(path)
        audit.check(admin, key)
    admin.goto(f"{w}/moderation?tab=senders")
    admin.locator("tbody[data-rows] tr", has_text="ACCESS").get_by_role("button", name="Approve").click()
    expect(admin.locator(".flashes")).to_contain_text("is now its current SADDR")

    author.goto(f"{w}/campaigns/new")
    audit.check(author, "author wizard 1 mode")
    author.get_by_role("radio", name=re.compile(r"^OnDemand")).check()
    author.get_by_role("button", name="Create draft and continue").click()
    audit.check(author, "author wizard 2 parameters")
    campaign_id = int(re.search(r"/campaigns/(\d+)/wizard/2", author.url).group(1))
    author.get_by_label("Campaign name").fill("Accessible campaign")
    sender = author.get_by_label("Sender name")
    sender.select_option(label=sender.locator("option", has_text="ACCESS").inner_text().strip())
    author.get_by_label("Message text").fill("Hello from the accessibility check")
    author.get_by_role("button", name="Save and continue →").click()
    audit.check(author, "author wizard 3 smpp")
    author.get_by_role("button", name="Save and continue →").click()
    audit.check(author, "author wizard 4 recipients")
    csv_path = tmp_path / "few.csv"
    csv_path.write_text("4915200000001\n4915200000002\nnot a number\n", encoding="utf-8")
    author.get_by_label(re.compile(r"^Recipient list")).set_input_files(str(csv_path))
    author.get_by_role("button", name="Upload").click()
    expect(author.locator(".upload-status")).to_contain_text("Done:", timeout=30_000)
    audit.check(author, "author wizard 4 upload done")
    author.goto(f"{w}/campaigns/{campaign_id}/wizard/5")
    audit.check(author, "author wizard 5 review")
    for tab in ("recipients", "job-errors", "message-errors", "audit"):
        author.goto(f"{w}/campaigns/{campaign_id}?tab={tab}")
        audit.check(author, f"author campaign detail {tab}")

    # Super admin: the installation pages.
    root = new_context(bypass_csp=True).new_page()
    sign_in(root, ADMIN_EMAIL, ADMIN_PASSWORD)
    for key, path in (("superadmin workspaces", "/admin/"), ("superadmin outbox", "/admin/outbox"),
                      ("superadmin audit log", "/admin/audit"), ("superadmin overview", "/admin/overview"),
                      ("superadmin diagnostics", "/admin/diagnostics"), ("superadmin account", "/account"),
                      ("superadmin system settings", "/admin/settings"),
                      ("superadmin workspace overview", f"{w}/")):
        root.goto(path)
        audit.check(root, key)

    audit.write()
    found = audit.blocking()
    unexpected = [f for f in found if f[1] not in KNOWN]
    assert not unexpected, "serious/critical axe violations (full report in artifacts/e2e/axe/report.txt):\n" + \
        "\n".join(f"  {key}: [{impact}] {rule} — {text} at {targets}" for key, rule, impact, text, targets in unexpected)
    if found:
        pytest.xfail("reported, not fixed yet: " + "; ".join(sorted({f"{r} on {k}" for k, r, *_ in found})))


def test_focus_is_visible_and_controls_are_labelled(stack, new_context):
    """Keyboard users see where they are: every control of the sign-in page (skip link, fields,
    button) shows a focus indicator (outline or box-shadow) when reached with Tab."""
    page = new_context().new_page()
    page.goto("/login")
    seen = []
    for _ in range(8):
        page.keyboard.press("Tab")
        style = page.evaluate("""() => { const el = document.activeElement, s = getComputedStyle(el);
            return {tag: el.tagName, name: el.getAttribute('name') || el.textContent.trim().slice(0, 30),
                    outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0,
                    shadow: s.boxShadow !== 'none'}; }""")
        if style["tag"] == "BODY":
            continue
        seen.append(style)
        assert style["outline"] or style["shadow"], f"no visible focus on {style}"
    names = {s["name"] for s in seen}
    assert {"Skip to content", "email", "password", "Sign in"} <= names, seen
