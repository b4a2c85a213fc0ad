"""The workspace sidebar, declared as data: (endpoint, label, permission). Entries whose endpoint
is not registered are skipped, and each is shown only when the permission table allows it."""
WORKSPACE_NAV = (
    ("workspace.overview", "Overview", "workspace.view"),
    ("campaigns.index", "Campaigns", "campaigns.view"),
    ("senders.index", "Sender names", "senders.view"),
    ("moderation.index", "Moderation", "moderation.view"),
    ("members.index", "Members", "members.view"),
    ("members.outbox", "Outbox", "outbox.view"),
    ("stoplist.index", "Stop-list", "stoplist.manage"),
    ("audit_log.workspace_log", "Audit log", "audit.view"),
    ("tokens.index", "API tokens", "tokens.manage_own"),
    ("monitoring.index", "Monitoring", "monitoring.view"),
    ("diagnostics.workspace", "Diagnostics", "diagnostics.view"),
    ("workspace.settings", "Settings", "workspace.settings"),
)


def workspace_nav(view_functions, can):
    return [(endpoint, label) for endpoint, label, action in WORKSPACE_NAV
            if endpoint in view_functions and can(action)]
