"""Named states (models/states.py): declared once, the CHECK constraints come from them, and the
campaign transition table compares with the names, not with string literals."""
import ast
import pathlib
import re

from models import Campaign, SenderRevision
from models.states import TEMPLATE_NAMES, CampaignStatus, Mode, Moderation, RevisionState, check_in, values

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


ALL_NAMES = set().union(*(values(enum) for enum in TEMPLATE_NAMES.values()))
# Modules whose state comparisons use the names (error codes and audit keys may still read "archived").
COMPARING = ["blueprints", "forms", "jobs/uploads.py", "services/senders.py", "services/moderation.py"]


def _compared_literals(tree):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            items = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
            for item in items:
                if isinstance(item, ast.Constant) and item.value in ALL_NAMES:
                    yield node.lineno, item.value


def test_views_forms_and_state_services_compare_with_the_names():
    offenders = []
    for entry in COMPARING:
        path = ROOT / entry
        for module in ([path] if path.suffix == ".py" else sorted(path.rglob("*.py"))):
            tree = ast.parse(module.read_text(encoding="utf-8"))
            offenders += [f"{module.relative_to(ROOT)}:{line} {value!r}" for line, value in _compared_literals(tree)]
    assert offenders == []


# `x.status == 'New'`, `u.state in ('queued', 'running')` … in a template (Jinja compares with the
# names: `Status.NEW`, `UploadState.QUEUED`, from app.py's Jinja globals).
TEMPLATE_COMPARISON = re.compile(r"\.(?:status|mode|moderation|state)\s*(?:==|!=|\bin\b)\s*\(?\s*'([^']*)'")


def test_templates_compare_with_the_names():
    offenders = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        for number, line in enumerate(template.read_text(encoding="utf-8").splitlines(), 1):
            offenders += [f"{template.relative_to(ROOT)}:{number} {value!r}"
                          for value in TEMPLATE_COMPARISON.findall(line) if value in ALL_NAMES]
    assert offenders == []


def test_templates_see_the_named_states():
    from app import create_app

    application = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with application.app_context():
        rendered = application.jinja_env.from_string(
            "{{ 'New' == Status.NEW }} {{ 'Trigger' == Mode.TRIGGER }} {{ 'queued' in (UploadState.QUEUED,) }} "
            "{{ ExportState.DONE }} {{ RevisionState.DRAFT }} {{ Moderation.AWAITING }}").render()
    assert rendered == "True True True done draft awaiting"
