"""The one number normaliser, the keyed hash and the mask (services/numbers.py)."""
import hmac

import pytest

from services.numbers import BadNumber, ctn_hash, display_number, hash_key, mask_number, normalise_number
from services.recipient_files import Layout, parse_line, sniff


@pytest.mark.parametrize("raw, expected", [
    ("+49 170 1234567", "491701234567"), ("0049-170-1234567", "491701234567"), ("(030) 123.456.78", "03012345678"),
    ('"491701234567"', "491701234567"), ("  4917012345  ", "4917012345"), ("[49]170/1234567", "491701234567"),
    ("1234567", "1234567"), ("123456789012345", "123456789012345"),
])
def test_normalise_accepts(raw, expected):
    assert normalise_number(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    ("", "empty"), ("   ", "empty"), ("123456", "too short"), ("1234567890123456", "too long"),
    ("49170abc4567", "other than digits"), ("=1+2", "other than digits"), ("+", "empty"),
])
def test_normalise_rejects_with_a_reason(raw, reason):
    with pytest.raises(BadNumber, match=reason):
        normalise_number(raw)


def test_non_ascii_digits_are_rejected_by_the_ingest():
    with pytest.raises(BadNumber):
        parse_line("٤٩١٧٠١٢٣٤٥٦٧", Layout())


def test_ctn_hash_is_keyed_per_workspace(app):
    assert ctn_hash("491701234567", 1) == ctn_hash("491701234567", 1)
    assert ctn_hash("491701234567", 1) != ctn_hash("491701234567", 2)
    assert len(ctn_hash("491701234567", 1)) == 64
    key = hash_key(1)
    assert key == hmac.digest(app.config["CTN_HASH_KEY"].encode(), b"ctn-hash:1", "sha256")
    assert ctn_hash("491701234567", 1) == hmac.digest(key, b"491701234567", "sha256").hex()
    installation = app.config["CTN_HASH_KEY"]
    app.config["CTN_HASH_KEY"] = "another installation"
    try:
        assert hash_key(1) != key
    finally:
        app.config["CTN_HASH_KEY"] = installation


def test_mask_shows_only_the_last_three_digits():
    assert mask_number("491701234567") == "•" * 9 + "567"
    assert display_number("491701234567", True) == "491701234567"
    assert display_number("491701234567", False).endswith("567") and "4917" not in display_number("491701234567", False)


@pytest.mark.parametrize("lines, delimiter, column, header", [
    (["491701234567", "491701234568"], None, 0, False),
    (["phone", "491701234567"], None, 0, True),
    (["name;phone;city", "a;491701234567;b"], ";", 1, True),
    (["Name,MSISDN", "a,491701234567"], ",", 1, True),
    (["491701234567\tAnn", "491701234568\tBob"], "\t", 0, False),
    (["first name, last name", "491701234567, x"], ",", 0, True),
    (['"Phone Number";"Name"', '"+49 170";"x"'], ";", 0, True),
])
def test_sniff_delimiter_header_and_column(lines, delimiter, column, header):
    layout = sniff(lines)
    assert (layout.delimiter, layout.column, layout.header) == (delimiter, column, header)


def test_parse_line_quoted_and_mixed():
    assert parse_line('"Doe, Jane",+49 170 1234567', Layout(",", 1, True)) == "491701234567"
    with pytest.raises(BadNumber, match="mixed delimiters"):
        parse_line("a,491701234567", Layout(";", 1, True))


@pytest.mark.parametrize("key", [b"k", b"secret-key-of-some-length", b"x" * 64, b"y" * 65, b"z" * 200])
def test_ingest_hasher_is_the_same_as_ctn_hash(key):
    from services.numbers import ctn_hasher

    assert ctn_hasher(key)(b"491701234567").decode() == hmac.digest(key, b"491701234567", "sha256").hex()


def test_ingest_hasher_with_a_workspace_key_is_ctn_hash(app):
    from services.numbers import ctn_hasher

    assert ctn_hasher(hash_key(7))(b"491701234567").decode() == ctn_hash("491701234567", 7)


@pytest.mark.parametrize("max_lines", [1, 2, 3, 1000])
def test_read_chunk_offsets_end_on_line_boundaries(app, tmp_path, max_lines):
    """Reading in chunks of any size gives the same numbers, errors and line numbers as one read."""
    from services.recipient_files import read_chunk, read_head

    body = "\ufeffphone;x\r\n491701111111;a\r\n\r\nbad;b\r\n+49 170 2222222;c\r\n0049 170 3333333;d\r\n491704444444"
    path = tmp_path / "f.csv"
    path.write_bytes(body.encode())
    layout = read_head(str(path))
    numbers, errors, offset, lines = [], [], 0, 0
    with open(path, "rb") as fh:
        while True:
            chunk = read_chunk(fh, offset, lines, layout, max_lines, 10)
            if not chunk.lines:
                break
            numbers += [n.decode() for n in chunk.numbers]
            errors += [(ln, reason) for ln, reason, _ in chunk.errors]
            offset, lines = chunk.end_offset, lines + chunk.lines
    assert offset == len(body.encode()) and lines == 7
    assert numbers == ["491701111111", "491702222222", "491703333333", "491704444444"]
    assert errors == [(4, "contains characters other than digits")]


@pytest.mark.parametrize("cell", [
    "+49 170 1234567", "0049-170-1234567", "(030) 123.456.78", "[49]170/1234567", "4917012345", "00123",
    "+0049170123456", "++49170123456", "123456", "1234567890123456", "0 0 49 170 1234567", "+", "00", "--",
    "49\t170\t1234567", "4917012345a", "+(49) 170-12.34/567", "  +49 170 1234567  ",
])
def test_ingest_fast_path_agrees_with_normalise_number(app, tmp_path, cell):
    from services.recipient_files import Layout, read_chunk

    path = tmp_path / "one.csv"
    path.write_bytes(cell.encode() + b";x\n")
    with open(path, "rb") as fh:
        chunk = read_chunk(fh, 1, 0, Layout(";", 0, False), 10, 10)
    path.write_bytes(b"\n" + cell.encode() + b";x\n")
    with open(path, "rb") as fh:
        chunk = read_chunk(fh, 1, 0, Layout(";", 0, False), 10, 10)
    try:
        expected = normalise_number(cell)
    except BadNumber:
        expected = None
    got = chunk.numbers[0].decode() if chunk.numbers else None
    assert got == expected


@pytest.mark.parametrize("query, viewer, expected", [
    ("", False, None), ("   ", True, None),
    ("ABCDEF12", False, ("hash", "abcdef12")), (" abcdef ", False, ("hash", "abcdef")),
    ("1234567890123456", False, ("hash", "1234567890123456")),   # digits only, longer than any number
    ("+49 170 1234567", True, ("number", "491701234567")), ("491701234567", True, ("number", "491701234567")),
    ("1234567890123456", True, ("hash", "1234567890123456")), ("abcdef", True, ("hash", "abcdef")),
])
def test_parse_search_accepts(query, viewer, expected):
    from services.numbers import parse_search

    assert parse_search(query, viewer) == expected


@pytest.mark.parametrize("query", ["491701234567", "+49 170 1234567", "123456", "4917", "abcde", "a" * 65,
                                   "٤٩١٧٠١٢٣٤٥٦٧", "abc\x00def", "12ab", "0x1234567"])
def test_parse_search_without_the_right_refuses_everything_but_a_hash_prefix_alike(query):
    from services.numbers import HASH_ONLY_MESSAGE, SearchRefused, parse_search

    with pytest.raises(SearchRefused) as refused:
        parse_search(query, False)
    assert refused.value.message == HASH_ONLY_MESSAGE and refused.value.code == "hash_search_only"


@pytest.mark.parametrize("query", ["12ab", "abcde", "a" * 65, "abc\x00def", "٤٩١٧٠١٢٣٤٥٦٧"])
def test_parse_search_with_the_right_names_a_bad_search(query):
    from services.errors import DomainError
    from services.numbers import parse_search

    with pytest.raises(DomainError, match="full phone number or by a hash"):
        parse_search(query, True)
