"""Reading a recipient file: is it text, how its lines are laid out, and its numbers chunk by chunk.

`read_head` decides from the first 64 KB whether the file is text and sniffs the layout
(delimiter, header row, number column). `read_chunk` reads up to N physical lines from a byte
offset and always ends on a line boundary, so the ingest can commit that offset and resume there.

Speed matters here (10M lines): a block of whole lines is stripped of what the normaliser removes
with one `bytes.translate` and matched with one compiled regex that yields the number of every
plain line and an empty string for anything unusual. Only those lines go through
`parse_line`/`normalise_number`, which gives the exact reason for a job error; a unit test checks
that both paths agree.
"""
import csv
import re
from dataclasses import dataclass, field

from services.numbers import MAX_DIGITS, MIN_DIGITS, BadNumber, normalise_number

HEAD_BYTES = 64 * 1024                  # how much of the file's start decides "is this text?"
MAX_LINE_BYTES = 64 * 1024              # a longer line is a job error (and is skipped in pieces)
READ_BLOCK = 128 * 1024                 # the spool is read in blocks of whole lines
RAW_MAX = 120                           # JobError.raw column size
HEADER_NAMES = re.compile(r"^(phone|phones|phone.?number|mobile|mobile.?number|msisdn|number|numbers|"
                          r"ctn|tel|telephone|cell|recipient|recipients|to|destination|dest|dnis)$")
DELIMITERS = (",", ";", "\t")
BOM = b"\xef\xbb\xbf"
STRIPPED = b" \t\r\f\v-.()[]/"           # what normalise_number removes, for ASCII bytes


class IngestFailed(Exception):
    """A non-retryable failure of the whole file (not text, spool gone): the build fails."""


@dataclass(frozen=True)
class Layout:
    """How the file's lines are read; derived from its first bytes, so a resumed run gets the same."""

    delimiter: str | None = None
    column: int = 0
    header: bool = False


@dataclass
class Chunk:
    end_offset: int
    lines: int = 0
    # The normalised numbers in file order, as newline-joined ASCII blobs (one per block): a
    # chunk read ahead costs about 13 bytes a number instead of a list of bytes objects (~56).
    parts: list = field(default_factory=list)
    errors: list = field(default_factory=list)       # (line_no, reason, raw) — the first keep_errors
    rejected: int = 0

    @property
    def numbers(self):
        return [number for part in self.parts for number in part.split(b"\n")]


# --- the head of the file -------------------------------------------------------------------

def _split(line, delimiter):
    if delimiter is None:
        return [line]
    if '"' in line:
        try:
            return next(csv.reader([line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            return line.split(delimiter)
    return line.split(delimiter)


def _clean_cell(cell):
    return cell.strip().strip('"').strip("'").strip().lower()


def read_head(path):
    """Decide whether the file at `path` is text and how to read it. Raises IngestFailed for non-text."""
    try:
        with open(path, "rb") as fh:
            return read_head_from(fh)
    except IngestFailed:
        raise
    except OSError as exc:
        raise IngestFailed(f"The uploaded file cannot be read ({exc.strerror or exc}).") from exc


def read_head_from(fh):
    """read_head for an open binary file (any file store's reader), read from its start."""
    fh.seek(0)
    head = fh.read(HEAD_BYTES)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IngestFailed("The file is UTF-16 text; save it as CSV UTF-8 (or plain text) and upload again.")
    if b"\x00" in head:
        raise IngestFailed("The file is not a text file (it contains binary data); upload a .csv or .txt list.")
    if head.startswith(BOM):
        head = head[len(BOM):]
    sample = head
    if len(head) == HEAD_BYTES and b"\n" in head:
        sample = head[:head.rfind(b"\n")]  # do not judge a character cut in half at the end
    try:
        text_head = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestFailed("The file is not UTF-8 text (wrong encoding, or not a text file); "
                           "save it as CSV UTF-8 and upload again.") from exc
    lines = [ln for ln in text_head.splitlines() if ln.strip()][:20]
    return sniff(lines)


def sniff(lines):
    """Delimiter (`,` `;` tab, or none), header row and the number column from the first lines."""
    if not lines:
        return Layout()
    first = lines[0]
    counts = {d: sum(ln.count(d) for ln in lines[:5]) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    delimiter = best if counts[best] else None
    cells = [_clean_cell(c) for c in _split(first, delimiter)]
    for i, cell in enumerate(cells):
        if HEADER_NAMES.match(cell.replace(" ", "_")):
            return Layout(delimiter, i, True)
    try:
        normalise_number(_split(first, delimiter)[0])
    except BadNumber:
        # Looks like a header when it has letters and the next line has a number in column 0.
        if any(ch.isalpha() for ch in first):
            return Layout(delimiter, 0, True)
    return Layout(delimiter, 0, False)


# --- one line, the exact way ----------------------------------------------------------------

def raw_for_error(raw):
    raw = raw.replace("\x00", "").strip()
    if raw[:1] in ("=", "+", "-", "@", "\t", "\r"):
        raw = "'" + raw  # never store something a spreadsheet would run as a formula
    return raw if len(raw) <= RAW_MAX else raw[:RAW_MAX - 1] + "…"


def parse_line(line, layout):
    """One decoded line -> normalised number; raises BadNumber with the reason."""
    cells = _split(line, layout.delimiter)
    try:
        if layout.column >= len(cells):
            raise BadNumber(f"no column {layout.column + 1} (the number column) on this line")
        return normalise_number(cells[layout.column])
    except BadNumber as exc:
        cell = cells[layout.column] if layout.column < len(cells) else line
        others = [d for d in DELIMITERS if d != layout.delimiter and d in cell]
        if others:
            shown = "tab" if others[0] == "\t" else f"“{others[0]}”"
            used = ("none" if layout.delimiter is None
                    else "tab" if layout.delimiter == "\t" else f"“{layout.delimiter}”")
            raise BadNumber(f"mixed delimiters: this line uses {shown}, the file uses {used}") from exc
        raise


# --- a block of lines, the fast way -----------------------------------------------------------

_FAST: dict = {}


def _fast_matcher(layout):
    """(bytes to delete, compiled regex) for plain lines of this layout.

    The regex yields one entry per line: the number when the line's number cell is exactly
    `(+|00)?digits{7,15}` after deleting STRIPPED, else "". The prefix is possessive, as in
    normalise_number: "0012345" loses its "00" and is then too short, never read as 7 digits.
    """
    key = (layout.delimiter, layout.column)
    if key not in _FAST:
        d = layout.delimiter
        strip = STRIPPED.replace(d.encode(), b"") if d else STRIPPED
        number = rb"(?:\+|00)?+(\d{%d,%d})" % (MIN_DIGITS, MAX_DIGITS)
        if d is None:
            plain = number + rb"$"
        else:
            e = re.escape(d.encode())
            plain = rb"(?:[^%s\n\"']*%s){%d}" % (e, e, layout.column) + number + rb"(?:%s[^\n]*)?$" % e
        _FAST[key] = (strip, re.compile(rb"^(?:" + plain + rb"|[^\n]*$)", re.M))
    return _FAST[key]


def _slow_line(raw, line_no, layout, chunk, keep_errors):
    """One line the fast path did not accept: its number, None (blank line), or a job error."""
    def reject(reason, text):
        chunk.rejected += 1
        if len(chunk.errors) < keep_errors:
            chunk.errors.append((line_no, reason[:200], raw_for_error(text)))

    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if len(raw) > MAX_LINE_BYTES:
        return reject(f"line longer than {MAX_LINE_BYTES // 1024} KB", raw[:RAW_MAX].decode("utf-8", "replace"))
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return reject("not valid UTF-8 text", raw.decode("utf-8", "replace"))
    delimiter = layout.delimiter
    if not line.strip() or (delimiter and not line.replace(delimiter, "").strip()):
        return None  # blank lines are ignored, not errors
    try:
        return parse_line(line, layout).encode("ascii")
    except BadNumber as exc:
        reject(str(exc), line)
    return None


def _parse_lines(seg, first_line_no, layout, chunk, keep_errors):
    """Every line of `seg` (whole lines; the last may lack its newline) into `chunk`."""
    if not seg:
        return
    body = seg[:-1] if seg.endswith(b"\n") else seg
    raws = body.split(b"\n")
    strip, matcher = _fast_matcher(layout)
    found = matcher.findall(body.translate(None, strip))
    if len(found) != len(raws) or max(map(len, raws)) > MAX_LINE_BYTES:
        found = [b""] * len(raws)  # let every line take the exact path
    if not all(found):
        for i, number in enumerate(found):
            if not number:
                found[i] = _slow_line(raws[i], first_line_no + i, layout, chunk, keep_errors)
        found = [number for number in found if number]
    if found:
        chunk.parts.append(b"\n".join(found))


def _skip_long_line(fh, pos, block, line_no, chunk, keep_errors):
    """A line longer than a whole block: one job error, skipped in bounded pieces; returns the new pos."""
    chunk.rejected += 1
    if len(chunk.errors) < keep_errors:
        chunk.errors.append((line_no, f"line longer than {MAX_LINE_BYTES // 1024} KB",
                             raw_for_error(block[:RAW_MAX].decode("utf-8", "replace"))))
    pos += len(block)
    while True:
        piece = fh.read(READ_BLOCK)
        if not piece:
            return pos
        nl = piece.find(b"\n")
        if nl != -1:
            return pos + nl + 1
        pos += len(piece)


def read_chunk(fh, start_offset, first_line_no, layout, max_lines, keep_errors):
    """Read up to `max_lines` physical lines starting at byte `start_offset`.

    Reads blocks of whole lines (never more than READ_BLOCK bytes at once); `end_offset` is the
    byte just after the last line consumed, so a chunk always ends on a line boundary. Line
    numbers count every physical line (header and blank lines too), as an editor shows them.
    """
    chunk = Chunk(end_offset=start_offset)
    pos, line_no = start_offset, first_line_no
    while chunk.lines < max_lines:
        fh.seek(pos)
        block = fh.read(READ_BLOCK)
        if not block:
            break
        if len(block) == READ_BLOCK:
            cut = block.rfind(b"\n")
            if cut == -1:
                line_no += 1
                chunk.lines += 1
                pos = _skip_long_line(fh, pos, block, line_no, chunk, keep_errors)
                continue
            block = block[:cut + 1]
        room = max_lines - chunk.lines
        count = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        if count > room:
            rest = block.split(b"\n", room)[-1]
            block, count = block[:len(block) - len(rest)], room
        seg, first = block, line_no + 1
        if pos == 0:
            if seg.startswith(BOM):
                seg = seg[len(BOM):]
            if layout.header:
                nl = seg.find(b"\n")
                seg, first = (seg[nl + 1:] if nl != -1 else b""), first + 1
        _parse_lines(seg, first, layout, chunk, keep_errors)
        chunk.lines += count
        line_no += count
        pos += len(block)
    chunk.end_offset = pos
    return chunk
