"""Secrets out of the access log: what a request line may show.

Query strings are never logged (they carry search terms, cursors, sometimes tokens), and a path
argument that is a secret — the invitation link `/invite/<token>` today — is replaced by
`REDACTED`. The routes to redact are derived from `app.url_map` (every rule with an argument
named in SECRET_ARGUMENTS), so a new token-in-path route is covered by naming its argument so.
`RedactingLogger` is gunicorn's access logger with these rules (deploy/gunicorn.conf.py).
"""
import re
from urllib.parse import urlsplit

from gunicorn import glogging

SECRET_ARGUMENTS = frozenset({"token"})
REDACTED = "REDACTED"
# Request and environ atoms that could carry a secret if someone put them in access_log_format.
_HIDDEN_HEADERS = ("{cookie}i", "{authorization}i", "{x-csrftoken}i", "{x-csrf-token}i", "{referer}i")


def secret_patterns(url_map):
    """[(regex, replacement)] for every rule with a secret argument (prefix match: a longer path
    that 404s loses its token too)."""
    patterns = []
    for rule in url_map.iter_rules():
        if not rule.arguments & SECRET_ARGUMENTS:
            continue
        regex, replacement, group = "^", "", 0
        for part in re.split(r"(<[^>]+>)", rule.rule):
            if part.startswith("<") and part.endswith(">"):
                name = part[1:-1].split(":")[-1]
                if name in SECRET_ARGUMENTS:
                    regex += "[^/]+"
                    replacement += REDACTED
                else:
                    group += 1
                    regex += "([^/]+)"
                    replacement += f"\\{group}"
            else:
                regex += re.escape(part)
                replacement += part.replace("\\", "\\\\")
        patterns.append((re.compile(regex), replacement))
    return patterns


def loggable_path(path, patterns):
    """`path` (no query string) with secret arguments redacted; '-' while the rules are unknown."""
    if patterns is None:
        return "-"
    for regex, replacement in patterns:
        if regex.match(path):
            return regex.sub(replacement, path, count=1)
    return path


def loggable_url(url, patterns):
    """A Referer: its origin and redacted path, without the query string."""
    if not url or url == "-":
        return "-"
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    return origin + loggable_path(parts.path or "/", patterns)


class RedactingLogger(glogging.Logger):
    """gunicorn's logger; access log atoms without query strings, tokens, cookies or credentials.

    `patterns` is set per worker by the `post_worker_init` hook in deploy/gunicorn.conf.py from
    the loaded app's url_map; until then paths are logged as '-' (fail closed)."""

    patterns = None

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path = loggable_path(environ.get("PATH_INFO") or "/", self.patterns)
        atoms["r"] = f"{environ.get('REQUEST_METHOD', '-')} {path} {environ.get('SERVER_PROTOCOL', '-')}"
        atoms["U"] = path
        atoms["q"] = "-"
        atoms["f"] = loggable_url(environ.get("HTTP_REFERER"), self.patterns)
        for key in _HIDDEN_HEADERS:
            if key in atoms:
                atoms[key] = "-"
        for key in [k for k in atoms if k.endswith("}e")]:  # the raw WSGI environ (RAW_URI, QUERY_STRING, …)
            atoms[key] = "-"
        return atoms
