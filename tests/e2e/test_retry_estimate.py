"""Issue 17 in a real browser against the real processes: the pre-flight estimate and the GSM-7
hints on the review step, a campaign sent to the reference Core with numbers it rejects, "Send
again to failed numbers", and the times of a Europe/Berlin workspace on the campaign page.

The super admin works alone in a workspace with four-eyes off (the scenario test covers the
two-person flow). Screenshots: artifacts/e2e/retry-estimate/.
"""
import re
import time

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Shots, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLUG = "berlin-retry"
GOOD = [f"49152{i:08d}" for i in range(1, 8)]
BAD = [f"99915{i:07d}" for i in range(1, 4)]  # the reference Core rejects 999… (ESME_RINVDSTADR)


def flash(page):
    return page.locator(".flashes .flash").first


def reload_until(page, check, timeout, every=1.0):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s on {page.url}")
        time.sleep(every)
        page.reload()


def test_estimate_gsm7_hints_and_retry_of_failed_numbers(stack, new_context, tmp_path):
    shot = Shots("retry-estimate")
    page = new_context().new_page()
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto("/admin/")
    page.get_by_label("Name", exact=True).fill("Berlin Retry")
    page.get_by_label("Slug").fill(SLUG)
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Sending window").fill("00:00-24:00")
    page.get_by_role("button", name="Create workspace").click()
    expect(flash(page)).to_contain_text("Workspace Berlin Retry created")

    page.goto(f"/w/{SLUG}/settings")
    shot(page, "settings")
    page.locator("input[name=four_eyes]").uncheck()
    page.get_by_role("button", name="Save settings").click()
    expect(flash(page)).to_contain_text("Settings saved")

    page.goto(f"/w/{SLUG}/senders")
    propose = page.locator("form", has=page.get_by_label("SADDR"))
    propose.get_by_label("Name", exact=True).fill("Berlin shop")
    propose.get_by_label("SADDR").fill("BERLIN")
    propose.get_by_label("Comment for the moderator").fill("e2e")
    propose.get_by_role("button", name="Submit for approval").click()
    page.goto(f"/w/{SLUG}/moderation?tab=senders")
    page.locator("tbody[data-rows] tr", has_text="BERLIN").get_by_role("button", name="Approve").click()
    expect(flash(page)).to_contain_text("BERLIN is now its current SADDR")

    # --- The wizard: a UCS-2 text, a list with numbers the Core will reject ------------------------------
    page.goto(f"/w/{SLUG}/campaigns")
    page.get_by_role("link", name="New campaign").first.click()
    page.get_by_role("radio", name=re.compile(r"^OnDemand")).check()
    page.get_by_role("button", name="Create draft and continue").click()
    campaign_id = int(re.search(r"/campaigns/(\d+)/wizard/2", page.url).group(1))
    page.get_by_label("Campaign name").fill("Winter sale e2e")
    sender = page.get_by_label("Sender name")
    sender.select_option(label=sender.locator("option", has_text="BERLIN").inner_text().strip())
    page.get_by_label("Message text").fill("Winter sale – 30 % off… don’t miss it")
    page.get_by_label("Start automatically after approval").check()
    page.get_by_role("button", name="Save and continue →").click()
    page.get_by_role("button", name="Save and continue →").click()  # step 3, SMPP defaults
    csv_path = tmp_path / "winter.csv"
    csv_path.write_text("\n".join(GOOD + BAD) + "\n", encoding="utf-8")
    widget = page.locator("#recipients-upload")
    widget.get_by_label(re.compile(r"^Recipient list")).set_input_files(str(csv_path))
    widget.get_by_role("button", name="Upload").click()
    expect(widget.locator(".upload-status")).to_contain_text("10 accepted", timeout=30_000)
    expect(page.locator("section.card", has_text="recipients so far")).to_contain_text("10", timeout=10_000)
    page.wait_for_load_state()
    page.get_by_role("button", name="Save and continue →").click()

    # --- Review: the estimate, the characters that force UCS-2 and their replacement -------------------
    estimate = page.locator("[data-estimate]")
    expect(estimate).to_contain_text("SMS parts billed")
    expect(estimate.locator(".tile-value")).to_have_text("10")
    expect(estimate).to_contain_text(re.compile(r"(under a minute|about \d+ min), finishing today \d\d:\d\d "
                                                r"Europe/Berlin"))
    expect(page.locator("mark.ucs2-char")).to_have_count(3 + 3)  # in the preview and in the hint list
    hints = page.locator("[data-encoding-hints]")
    expect(hints).to_contain_text("–")
    shot(page, "review-ucs2-with-estimate")
    hints.get_by_role("button", name="Use GSM-7 characters").click()
    expect(flash(page)).to_contain_text("now GSM-7, 1 SMS part per recipient")
    expect(page.locator("[data-encoding-hints]")).to_have_count(0)
    expect(page.locator(".message-preview")).to_have_text("Winter sale - 30 % off... don't miss it")
    shot(page, "review-gsm7")
    page.get_by_role("button", name="Submit to moderation").click()
    expect(flash(page)).to_contain_text("Submitted to moderation")

    page.goto(f"/w/{SLUG}/moderation?tab=campaigns")
    row = page.locator(f"#campaign-{campaign_id}")
    expect(row.locator("[data-estimate]")).to_contain_text("10 SMS parts billed")
    shot(page, "moderation-row-estimate")
    row.get_by_role("button", name="Approve").click()
    expect(flash(page)).to_contain_text("Approved campaign")

    # --- Sent: 7 delivered, 3 rejected by the Core; times in Europe/Berlin -----------------------------
    page.goto(f"/w/{SLUG}/campaigns/{campaign_id}")
    status = page.locator(".status-line")
    reload_until(page, lambda: "Done" in status.inner_text(), timeout=90)
    tiles = page.locator(".tiles .tile")
    expect(tiles.filter(has_text="Delivered")).to_contain_text("7")
    expect(tiles.filter(has_text="Failed")).to_contain_text("3")
    expect(page.locator("time").first).to_contain_text("Europe/Berlin")

    # --- Send again to the failed numbers --------------------------------------------------------------
    retry = page.locator("[data-retry]")
    expect(retry).to_contain_text("Every final failure (3)")
    shot(page, "campaign-done-retry")
    retry.get_by_label("Which numbers").select_option("failed")
    retry.get_by_role("button", name="Send again to failed numbers").click()
    expect(flash(page)).to_contain_text("holds the 3 failed numbers")
    retry_id = int(re.search(r"/campaigns/(\d+)/wizard/", page.url).group(1))
    assert retry_id != campaign_id
    page.goto(f"/w/{SLUG}/campaigns/{retry_id}")
    expect(page.locator("[data-retry-of]")).to_contain_text(f"campaign #{campaign_id}")
    expect(page.locator(".tiles .tile", has_text="Recipients")).to_contain_text("3")
    expect(page.locator(".status-line")).to_contain_text("New")  # a draft: through moderation like any campaign
    shot(page, "retry-draft")
