"""The campaign wizard's rules, split by concern (issue 16, item 8). Import the module you need:

- `steps`: the wizard's steps and navigation, who may edit a draft, effective SMPP values;
- `validation`: parsing and validating each step's values (`InvalidFields`), shared by pages and API;
- `persistence`: creating, saving (audited, resumable), cloning drafts;
- `estimates`: the review step's figures (sample numbers, days-to-finish estimate);
- `api_shape`: draft values as the API's JSON shows them.

A draft is a campaign in status `New` (never submitted, or returned by a rejection). Each step's
values arrive as plain values (from a form or from JSON), are validated here — the wizard pages
and the API share every rule — and are saved with an audit event holding the before/after of the
fields that changed. `wizard_step` remembers the furthest step the author may open, so a draft is
resumed from the list where it was left.
"""
