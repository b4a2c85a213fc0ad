"""Every setting is declared once, in config.py (with its default), and read as config["X"].

Scans the source with `ast`: a read of an undeclared key, or any `config.get(...)` (which would
carry a second default or hide a typo), fails here with the file and line.
"""
import ast
import pathlib

from flask import Flask

from config import load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ["app.py", "cli.py", "wsgi.py", "extensions.py", "audit", "blueprints", "forms", "gateway", "jobs",
           "models", "services"]
CONFIG_NAMES = {"config", "cfg"}  # local names our code gives the Flask config mapping


def declared():
    return set(load_config({"SECRET_KEY": "x"}, env={})) | set(Flask.default_config)


def is_config(node):
    """`config`, `cfg`, `app.config`, `current_app.config`, `self.app.config`…"""
    return ((isinstance(node, ast.Name) and node.id in CONFIG_NAMES)
            or (isinstance(node, ast.Attribute) and node.attr == "config"))


def source_files():
    for entry in SOURCES:
        path = ROOT / entry
        yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


def config_uses():
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and is_config(node.func.value)):
                yield "get", f"{where}:{node.lineno}", None
            elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and is_config(node.value)
                  and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                yield "read", f"{where}:{node.lineno}", node.slice.value


def test_no_config_get_anywhere():
    gets = [where for kind, where, _ in config_uses() if kind == "get"]
    assert not gets, f'read settings as config["X"] (declared in config.py), not config.get: {gets}'


def test_every_setting_read_is_declared_in_config_py():
    known = declared()
    undeclared = [f"{where} {key}" for kind, where, key in config_uses() if kind == "read" and key not in known]
    assert not undeclared, f"settings read but not declared in config.py: {undeclared}"


def test_the_scan_sees_the_reads():
    """Guard the guard: the scan finds the settings the code is known to read."""
    keys = {key for kind, _, key in config_uses() if kind == "read"}
    assert {"CORE_URL", "DISPATCH_PARALLEL", "CAMPAIGN_NOMINAL_RATE_PER_HOUR", "TOTP_ISSUER"} <= keys
