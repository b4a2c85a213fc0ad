"""The ingest's fast block parser must read every line exactly as the line-by-line path does."""
import random

import pytest

from services.recipient_files import Chunk, Layout, _parse_lines, _slow_line

ALPHABET = list("0123456789") + ["+", "0", "00", " ", "-", ".", "(", ")", "/", "[", "a", ";", ",", "\t", '"', "'",
                                 "\r", "\x1c", "é", "٣", "\u00a0"]


def line_by_line(seg, layout):
    chunk, numbers = Chunk(0), []
    body = seg[:-1] if seg.endswith(b"\n") else seg
    for i, raw in enumerate(body.split(b"\n")):
        number = _slow_line(raw, 1 + i, layout, chunk, 1000)
        if number:
            numbers.append(number)
    return numbers, chunk.errors, chunk.rejected


def block(seg, layout):
    chunk = Chunk(0)
    _parse_lines(seg, 1, layout, chunk, 1000)
    return chunk.numbers, chunk.errors, chunk.rejected


@pytest.mark.parametrize("layout", [Layout(";", 0), Layout(",", 1), Layout(None, 0), Layout("\t", 2), Layout(";", 1)],
                         ids=["semicolon", "comma-col2", "plain", "tab-col3", "semicolon-col2"])
def test_fast_block_parser_agrees_with_the_line_parser_on_random_lines(layout):
    rnd = random.Random(20261125)
    for _ in range(2000):
        lines = []
        for _ in range(rnd.randint(1, 8)):
            lines.append("".join(rnd.choice(ALPHABET) if rnd.random() < 0.3 else rnd.choice("0123456789")
                                 for _ in range(rnd.randint(0, 25))))
        seg = ("\n".join(lines) + ("\n" if rnd.random() < 0.5 else "")).encode()
        assert block(seg, layout) == line_by_line(seg, layout), seg


def test_plain_lines_take_the_fast_path_and_odd_ones_get_their_reason():
    seg = b"+49 170 1234567;a\n0012345;b\n\n\"+49 170 7654321\";c\n491701111111;" + b"x" * 70_000 + b"\n"
    numbers, errors, rejected = block(seg, Layout(";", 0))
    assert numbers == [b"491701234567", b"491707654321"]
    assert [(line, reason) for line, reason, _ in errors] == [(2, "too short (5 digits, at least 7)"),
                                                              (5, "line longer than 64 KB")]
    assert rejected == 2
