"""The operator's day, in a real browser against the real processes (issue 10, item 1).

Super admin creates a workspace and invites an author and two moderators (links read from the
Outbox page); each accepts and sets a password. The author proposes a sender name, a moderator
approves it. The author builds an OnDemand campaign through the five wizard steps, watching the
segment counter while typing and uploading a real CSV through the page's file input (raw-body
upload with the progress bar, then the ingest progress). Both moderators watch the queue in their
own browsers; when the first approves, the item leaves the second one's queue by itself. The
campaign is sent to the reference Core and delivered (Done), the Live Pulse shows the figures, an
export is downloaded and its rows checked, a moderator builds and downloads the evidence pack (its
manifest checked, the audit trail sealed and verified), the campaign is archived and restored. Finally three
wrong passwords lock an account and the right one is refused with the same message.

Screenshots of every page: artifacts/e2e/scenario/.
"""
import csv
import hashlib
import io
import json
import re
import time
import zipfile

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shots, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLUG = "acme-e2e"
PASSWORDS = {
    "author": "author passphrase for the e2e run",
    "mod1": "first moderator passphrase e2e",
    "mod2": "second moderator passphrase e2e",
}
EMAILS = {"author": "ann.author@e2e.example.org", "mod1": "mo.one@e2e.example.org",
          "mod2": "max.two@e2e.example.org"}
RECIPIENTS = [f"49151{i:08d}" for i in range(1, 201)]
INVITE_RE = re.compile(r"https?://\S+/invite/[A-Za-z0-9_\-]+")


def flash(page):
    return page.locator(".flashes .flash").first


def reload_until(page, check, timeout, every=1.0):
    """Reload the page until check() is true (pages that do not poll by themselves)."""
    deadline = time.time() + timeout
    while True:
        if check():
            return
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s on {page.url}")
        time.sleep(every)
        page.reload()


def test_operator_day(stack, new_context, tmp_path):
    shot = Shots("scenario")

    # --- Super admin: a workspace and three invitations ---------------------------------------------------
    admin = new_context().new_page()
    sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
    # Super admins land in the Master workspace; the system settings are one click away.
    expect(admin.get_by_role("heading", name="The Master workspace")).to_be_visible()
    admin.get_by_role("link", name="System settings").click()
    expect(admin.get_by_role("heading", name="System settings")).to_be_visible()
    row = admin.locator("#setting-LOCKOUT_SECONDS")
    row.get_by_label("New value for LOCKOUT_SECONDS").fill("120")
    row.get_by_role("button", name="Save").click()
    expect(flash(admin)).to_contain_text("LOCKOUT_SECONDS saved")
    expect(admin.locator("#setting-LOCKOUT_SECONDS")).to_contain_text("database")
    shot(admin, "admin-settings")
    admin.goto("/admin/")
    expect(admin.get_by_role("heading", name="All workspaces")).to_be_visible()
    shot(admin, "admin-workspaces")
    admin.get_by_label("Name", exact=True).fill("Acme Retail")
    admin.get_by_label("Slug").fill(SLUG)
    admin.get_by_label("Time zone").fill("Europe/Berlin")
    admin.get_by_label("Sending window").fill("00:00-24:00")  # no quiet hours: the run may be at night
    admin.get_by_role("button", name="Create workspace").click()
    expect(flash(admin)).to_contain_text("Workspace Acme Retail created")
    shot(admin, "workspace-created")

    admin.goto(f"/w/{SLUG}/members")
    for who, role in (("author", "Author"), ("mod1", "Moderator"), ("mod2", "Moderator")):
        form = admin.locator("#invitations form")
        form.get_by_label("E-mail").fill(EMAILS[who])
        form.get_by_label("Role").select_option(label=role)
        form.get_by_role("button", name="Send invitation").click()
        expect(flash(admin)).to_contain_text(f"Invitation for {EMAILS[who]} sent")
    expect(admin.locator("#invitations table tbody tr")).to_have_count(3)
    shot(admin, "members-invited")

    admin.get_by_role("navigation", name="Workspace").get_by_role("link", name="Outbox").click()
    expect(admin.get_by_role("heading", name="Outbox", exact=True)).to_be_visible()
    shot(admin, "outbox")
    links = {}
    for who, email in EMAILS.items():
        mail = admin.locator("article.mail", has_text=f"To {email}")
        match = INVITE_RE.search(mail.locator(".mail-body").inner_text())
        assert match, f"no invitation link in the mail to {email}"
        links[who] = match.group(0)

    # --- Invitees accept in their own browsers ----------------------------------------------------------
    pages = {}
    for who in ("author", "mod1", "mod2"):
        page = new_context().new_page()
        page.goto(links[who])
        expect(page.get_by_role("heading", name="Join Acme Retail")).to_be_visible()
        if who == "author":
            shot(page, "invitation-accept")
        page.get_by_label("Your name").fill({"author": "Ann Author", "mod1": "Mo One", "mod2": "Max Two"}[who])
        page.get_by_label("Choose a password").fill(PASSWORDS[who])
        page.get_by_label("Repeat the password").fill(PASSWORDS[who])
        page.get_by_role("button", name="Create account and join").click()
        expect(flash(page)).to_contain_text("Welcome to Acme Retail")
        pages[who] = page
    author, mod1, mod2 = pages["author"], pages["mod1"], pages["mod2"]
    shot(author, "author-overview")

    # --- Sender name: proposed by the author, approved by a moderator -----------------------------------
    author.get_by_role("navigation", name="Workspace").get_by_role("link", name="Sender names").click()
    shot(author, "senders-empty")
    propose = author.locator("form", has=author.get_by_label("SADDR"))
    propose.get_by_label("Name", exact=True).fill("Acme shop")
    propose.get_by_label("SADDR").fill("ACMESHOP")
    propose.get_by_label("Comment for the moderator").fill("Our retail brand, registered with the operator.")
    propose.get_by_role("button", name="Submit for approval").click()
    expect(flash(author)).to_contain_text("waiting for a moderator")
    shot(author, "sender-proposed")

    mod1.goto(f"/w/{SLUG}/moderation?tab=senders")
    row = mod1.locator("tbody[data-rows] tr", has_text="ACMESHOP")
    expect(row).to_be_visible()
    shot(mod1, "moderation-senders")
    row.get_by_role("button", name="Approve").click()
    expect(flash(mod1)).to_contain_text("ACMESHOP is now its current SADDR")
    shot(mod1, "moderation-sender-approved")

    # --- Both moderators watch the campaign queue ---------------------------------------------------------
    for page in (mod1, mod2):
        page.goto(f"/w/{SLUG}/moderation?tab=campaigns")
        expect(page.locator("[data-empty]")).to_be_visible()

    # --- The author's campaign: five wizard steps ---------------------------------------------------------
    author.get_by_role("navigation", name="Workspace").get_by_role("link", name="Campaigns").click()
    shot(author, "campaigns-empty")
    author.get_by_role("link", name="New campaign").first.click()
    author.get_by_role("radio", name=re.compile(r"^OnDemand")).check()
    shot(author, "wizard-1-mode")
    author.get_by_role("button", name="Create draft and continue").click()
    expect(flash(author)).to_contain_text("created as OnDemand")
    campaign_id = int(re.search(r"/campaigns/(\d+)/wizard/2", author.url).group(1))

    author.get_by_label("Campaign name").fill("Spring sale e2e")
    sender = author.get_by_label("Sender name")
    sender.select_option(label=sender.locator("option", has_text="ACMESHOP").inner_text().strip())
    counter = author.locator("#segment-counter")
    expect(counter).to_have_text("Empty — type the message.")
    text = author.get_by_label("Message text")
    text.press_sequentially("Spring sale: 20% off")
    expect(counter).to_contain_text("GSM-7 · 20 characters · 1 SMS part")
    text.press_sequentially(" everything in store this weekend only!")
    expect(counter).to_contain_text("GSM-7 · 59 characters · 1 SMS part (160 per part) · 101 left")
    text.press_sequentially(" €")  # the euro sign is a GSM-7 extension character: it counts as two
    expect(counter).to_contain_text("62 characters")
    expect(counter).to_contain_text("count as two")
    text.press_sequentially(" ✓")  # outside the GSM alphabet: UCS-2
    expect(counter).to_contain_text("UCS-2")
    text.press("Backspace")
    text.press("Backspace")
    expect(counter).to_contain_text("GSM-7 · 62 characters")
    author.get_by_label("Start automatically after approval").check()
    shot(author, "wizard-2-parameters")
    author.get_by_role("button", name="Save and continue →").click()

    expect(author.get_by_role("heading", name="SMPP fields")).to_be_visible()
    expect(author.get_by_label("SADDR (sender address)")).to_have_value("ACMESHOP")
    shot(author, "wizard-3-smpp")
    author.get_by_role("button", name="Save and continue →").click()

    # Step 4: the file goes through the page's file input; upload.js sends it as the raw body
    # and the progress bar follows the transfer and then the ingest job.
    csv_path = tmp_path / "spring-sale.csv"
    csv_path.write_text("phone\r\n" + "\r\n".join(RECIPIENTS) + "\r\n", encoding="utf-8")
    widget = author.locator("#recipients-upload")
    expect(widget.locator(".upload-progress")).to_be_hidden()
    widget.get_by_label(re.compile(r"^Recipient list")).set_input_files(str(csv_path))
    widget.get_by_role("button", name="Upload").click()
    expect(widget.locator(".upload-progress")).to_be_visible()
    expect(widget.locator(".upload-status")).to_contain_text("Done: 201 lines, 200 accepted, 0 duplicates, 0 rejected", timeout=30_000)
    expect(widget.locator("progress")).to_have_attribute("value", "100")
    shot(author, "wizard-4-upload-done")
    # upload.js reloads the page once the ingest is done; the count comes from the server then.
    expect(author.locator("section.card", has_text="recipients so far")).to_contain_text("200", timeout=10_000)
    author.wait_for_load_state()
    author.get_by_role("button", name="Save and continue →").click()

    expect(author.get_by_role("heading", name="Recipients")).to_be_visible()
    expect(author.locator(".tile", has_text="recipients")).to_contain_text("200")
    shot(author, "wizard-5-review")
    author.get_by_role("button", name="Submit to moderation").click()
    expect(flash(author)).to_contain_text("Submitted to moderation")
    expect(author.locator(".status-line")).to_contain_text("Pending")
    shot(author, "campaign-submitted")

    # --- Two moderators: the second one's queue drops the item when the first approves -------------------
    row1 = mod1.locator(f"#campaign-{campaign_id}")
    row2 = mod2.locator(f"#campaign-{campaign_id}")
    expect(row1).to_be_visible(timeout=10_000)  # arrived by polling, without a reload
    expect(row2).to_be_visible(timeout=10_000)
    shot(mod2, "moderation-campaign-waiting")
    row1.get_by_role("button", name="Approve").click()
    expect(flash(mod1)).to_contain_text("Approved campaign “Spring sale e2e”")
    shot(mod1, "moderation-campaign-approved")
    expect(row2).to_have_count(0, timeout=10_000)  # the queue polls every 3 s
    expect(mod2.locator("#queue-live")).to_contain_text("decided by someone else")
    expect(mod2.locator("#queue-live")).to_be_visible()  # a notice on the page, not only for screen readers
    expect(mod2.locator("[data-empty]")).to_be_visible()
    shot(mod2, "moderation-queue-dropped")

    # --- Delivery against the reference Core; the Live Pulse on the dashboard ----------------------------
    admin.goto(f"/w/{SLUG}/")
    author.goto(f"/w/{SLUG}/campaigns/{campaign_id}")
    status = author.locator(".status-line")
    reload_until(author, lambda: "Done" in status.inner_text(), timeout=90)
    tiles = author.locator(".tiles .tile")
    expect(tiles.filter(has_text="Delivered")).to_contain_text("200")
    expect(tiles.filter(has_text="Failed")).to_contain_text("0")
    shot(author, "campaign-done")

    pulse = admin.locator("section.pulse")
    expect(pulse.get_by_role("heading", name="Live Pulse")).to_be_visible()
    # pulse.js refreshes every 5 s: the per-minute figures move from what the page was served with (the
    # messages may have been sent in the previous minute and delivered in this one: either counts).
    expect(pulse.locator('[data-pulse="minute"]')).to_contain_text(re.compile(r"[1-9][\d,]* (sent|delivered)"),
                                                                    timeout=15_000)
    expect(pulse.locator('[data-pulse="delivery_rate"]')).to_have_text(re.compile(r"^\d+(\.\d)? %$"))
    expect(pulse.locator('[data-pulse="core"]')).to_have_text("up")
    # The KPI tiles and charts are rendered by the server from figures shared for up to 5 s.
    completed = admin.locator(".kpi-tiles .tile", has_text="Completed").locator(".tile-value")
    reload_until(admin, lambda: completed.inner_text() == "1", timeout=20)
    shot(admin, "dashboard-live-pulse")

    # --- Export: requested on the campaign page, built by the worker, downloaded and read ----------------
    exports = author.locator("#exports")
    exports.get_by_label("Format").select_option("csv")
    exports.get_by_role("button", name="Export").click()
    expect(flash(author)).to_contain_text("is queued")
    author.locator("#exports").get_by_role("link", name=re.compile(r"^Export #\d+")).first.click()
    reload_until(author, lambda: author.get_by_role("link", name="Download CSV").count() > 0, timeout=60)
    shot(author, "export-ready")
    with author.expect_download() as info:
        author.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    raw = open(download.path(), encoding="utf-8-sig").read()
    rows = list(csv.DictReader(io.StringIO(raw)))
    assert len(rows) == len(RECIPIENTS)
    assert {"number", "status", "smpp_code", "submitted_at", "delivered_at"} <= set(rows[0])
    assert {r["status"].lower() for r in rows} == {"delivered"}
    assert all(r["submitted_at"] and r["delivered_at"] for r in rows)
    # The author may not see full numbers: masked, but the tails match the uploaded list.
    assert not ({r["number"] for r in rows} & set(RECIPIENTS))
    assert sorted(r["number"][-3:] for r in rows) == sorted(n[-3:] for n in RECIPIENTS)

    # --- Evidence pack: a moderator builds it on the campaign page, downloads it, the manifest checks out ---
    author.goto(f"/w/{SLUG}/campaigns/{campaign_id}")
    expect(author.get_by_role("button", name="Build evidence pack")).to_have_count(0)  # authors may not
    mod1.goto(f"/w/{SLUG}/campaigns/{campaign_id}")
    mod1.get_by_role("button", name="Build evidence pack").click()
    expect(flash(mod1)).to_contain_text("is queued")
    reload_until(mod1, lambda: mod1.get_by_role("link", name="Download ZIP").count() > 0, timeout=60)
    shot(mod1, "evidence-ready")
    shown_sha = mod1.locator("code.hash").inner_text().strip()
    with mod1.expect_download() as info:
        mod1.get_by_role("link", name="Download ZIP").click()
    data = open(info.value.path(), "rb").read()
    assert hashlib.sha256(data).hexdigest() == shown_sha
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    for line in files["SHA256SUMS"].decode().splitlines():  # what `sha256sum -c SHA256SUMS` does
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(files[name]).hexdigest() == digest, name
    manifest = json.loads(files["manifest.json"])
    assert manifest["numbers"] == "masked" and manifest["recipients"] == len(RECIPIENTS)
    approval = json.loads(files["campaign.json"])["approval"]
    assert approval["fingerprint"] and approval["basis_matches_fingerprint"] is True
    actions = {a["action"] for a in json.loads(files["people.json"])["actions"]}
    assert {"campaigns.submit", "campaigns.approve"} <= actions, actions
    assert not any(n.encode() in files["recipients.csv"] for n in RECIPIENTS)
    # The audit trail so far is sealed and verifies (the periodic job also seals every few minutes).
    stack.flask("audit", "seal")
    assert "verified" in stack.flask("audit", "verify")

    # --- Archive and restore ---------------------------------------------------------------------------
    author.goto(f"/w/{SLUG}/campaigns/{campaign_id}")
    author.once("dialog", lambda dialog: dialog.accept())  # "Archive this campaign?" (data-confirm)
    author.get_by_role("button", name="Archive").click()
    expect(flash(author)).to_contain_text("Archived")
    expect(author.locator(".status-line")).to_contain_text("archived")
    author.goto(f"/w/{SLUG}/campaigns")
    expect(author.get_by_role("link", name="Spring sale e2e")).to_have_count(0)
    author.get_by_label("Archived").select_option(label="Archived only")
    author.get_by_role("button", name="Apply").click()
    shot(author, "campaigns-archived")
    author.get_by_role("link", name="Spring sale e2e").click()
    author.get_by_role("button", name="Restore").click()
    expect(flash(author)).to_contain_text("Restored")
    author.goto(f"/w/{SLUG}/campaigns")
    expect(author.get_by_role("link", name="Spring sale e2e")).to_be_visible()
    shot(author, "campaigns-restored")

    # --- Lockout: three wrong passwords, then the right one is refused with the same message --------------
    stranger = new_context().new_page()
    messages = []
    for attempt in range(4):
        password = PASSWORDS["mod2"] if attempt == 3 else f"not the password {attempt}"
        sign_in(stranger, EMAILS["mod2"], password)
        expect(flash(stranger)).to_be_visible()
        messages.append(flash(stranger).inner_text())
        assert "/login" in stranger.url
    shot(stranger, "login-locked")
    assert len(set(messages)) == 1, messages
    # Unknown accounts get the very same words.
    sign_in(stranger, "nobody@e2e.example.org", "whatever it is here")
    assert flash(stranger).inner_text() == messages[0]
    stack.check_alive()
