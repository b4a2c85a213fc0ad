"""Named states (models/states.py): declared once, the CHECK constraints come from them, and the
campaign transition table compares with the names, not with string literals."""
import ast
import pathlib

from models import Campaign, SenderRevision
from models.states import CampaignStatus, Mode, Moderation, RevisionState, check_in, values

ROOT = pathlib.Path(__file__).resolve().parents[2]


def constraint(table, name):
    return next(str(c.sqltext) for c in table.constraints if c.name in (name, f"ck_{table.name}_{name}"))


def test_check_constraints_are_generated_from_the_enums():
    assert constraint(Campaign.__table__, "status_known") == check_in("status", CampaignStatus)
    assert constraint(Campaign.__table__, "mode_known") == check_in("mode", Mode)
    assert constraint(Campaign.__table__, "moderation_known") == check_in("moderation", Moderation)
    assert constraint(SenderRevision.__table__, "state_known") == check_in("state", RevisionState)
    # the same SQL the migrations created (0002), so no schema change is needed
    assert check_in("mode", Mode) == "mode IN ('OnDemand', 'OnTime', 'Spread', 'Trigger')"


def test_the_names_equal_the_stored_strings():
    assert CampaignStatus.SENDING == "Sending" and "Sending" in {CampaignStatus.SENDING}
    assert values(CampaignStatus) == ("New", "Building", "Pending", "Sending", "Paused", "Done", "Cancelled",
                                      "Failed", "Expired")


# Modules converted to the names so far (issue 16: the rest still assign or compare literals).
NAMED = ["services/campaigns.py", "blueprints/campaigns/detail.py", "blueprints/campaigns/wizard.py"]


def test_the_transition_table_and_the_campaign_pages_use_names_not_literals():
    names = set(values(CampaignStatus)) | set(values(Mode)) | set(values(Moderation))
    for module in NAMED:
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        literals = [(node.lineno, node.value) for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]
        assert not literals, f"{module} uses string literals for states: {literals}"
