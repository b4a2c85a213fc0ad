"""The layers that `.importlinter` cannot see: app.py, cli.py, wsgi.py, extensions.py and config.py
are top-level modules (grimp takes only packages as roots), so their imports are checked here
with `ast`. The package layers themselves are checked by `lint-imports` (CI and pre-commit)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT = {"app", "wsgi", "cli", "config", "extensions", "blueprints", "forms", "jobs", "services", "gateway",
           "audit", "models"}
# What each top-level module may import from the project (every import, function-local ones included).
ALLOWED = {
    "config": set(),
    "extensions": set(),
    "wsgi": {"app"},
    "cli": {"audit", "blueprints", "extensions", "models", "services"},
    "app": {"audit", "blueprints", "cli", "config", "extensions", "models", "services", "gateway"},
}


def project_imports(path):
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & PROJECT
    return found


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_top_level_module_imports_only_below_it(module):
    extra = project_imports(ROOT / f"{module}.py") - ALLOWED[module] - {module}
    assert not extra, f"{module}.py imports {sorted(extra)}, above or beside its layer"


def test_only_the_worker_builds_the_app():
    """Below the entry points, only jobs/worker.py imports `app` (the RQ worker process's app)."""
    offenders = []
    for package in ("blueprints", "forms", "jobs", "services", "gateway", "audit", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != ROOT / "jobs" / "worker.py" and {"app", "cli"} & project_imports(path):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these modules import app or cli: {offenders}"
