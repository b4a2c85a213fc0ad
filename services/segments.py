"""SMS encoding and segment counting: what the wizard's live counter shows and what the API reports.

A text that uses only the GSM 03.38 alphabet goes out as GSM-7: one septet per character, two for
the extension-table characters (``^ { } [ ] ~ \\ | €`` and form feed), 160 septets in one SMS,
153 per part of a concatenated SMS (the user-data header takes 7). Anything else goes out as
UCS-2: UTF-16 code units, 70 in one SMS, 67 per part. An escape pair (GSM-7) or a surrogate pair
(UCS-2) is never split across two parts, which is why the part count is computed by filling the
parts in order rather than by a division. ``static/js/wizard.js`` implements the same algorithm;
``static/js/segment-vectors.json`` holds the cases both implementations are tested against.
"""
from dataclasses import asdict, dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}
MULTI = {GSM7: 153, UCS2: 67}
MAX_SEGMENTS = 10  # the Core accepts ≤ 1530 GSM-7 septets / ≤ 670 UCS-2 units (docs/core-api.md)

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}  # ESC itself is not something an author types
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str       # "GSM-7" or "UCS-2"
    characters: int     # what a person counts: Unicode code points
    units: int          # septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2)
    segments: int       # SMS parts; 0 for an empty text
    per_segment: int    # 160/70 for a single SMS, 153/67 once the text needs more than one
    remaining: int      # units left in the last part before another part is needed

    def as_dict(self):
        return asdict(self)


def encoding_of(text):
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def _unit_sizes(text, encoding):
    if encoding == GSM7:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def _parts(sizes, capacity):
    parts, used = 1, 0
    for size in sizes:
        if used + size > capacity:
            parts, used = parts + 1, 0
        used += size
    return parts, used


def count(text):
    """Encoding, units and SMS parts of `text` (None counts as empty)."""
    text = text or ""
    encoding = encoding_of(text)
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    if units == 0:
        return SegmentInfo(encoding, 0, 0, 0, SINGLE[encoding], SINGLE[encoding])
    if units <= SINGLE[encoding]:
        return SegmentInfo(encoding, len(text), units, 1, SINGLE[encoding], SINGLE[encoding] - units)
    parts, used = _parts(sizes, MULTI[encoding])
    return SegmentInfo(encoding, len(text), units, parts, MULTI[encoding], MULTI[encoding] - used)


def data_coding(text: str | None) -> int:
    """The SMPP data_coding value the Core expects: 0 for GSM-7, 8 for UCS-2."""
    return 0 if encoding_of(text or "") == GSM7 else 8
