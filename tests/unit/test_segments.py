"""GSM-7 / UCS-2 segment counting: services/segments.py and static/js/wizard.js against the same vectors."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from services import segments

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "static/js/segment-vectors.json").read_text(encoding="utf-8"))["cases"]
FIELDS = ("encoding", "characters", "units", "segments", "per_segment", "remaining")


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_python_matches_shared_vectors(case):
    got = segments.count(case["text"]).as_dict()
    assert {k: got[k] for k in FIELDS} == {k: case[k] for k in FIELDS}


def test_javascript_matches_shared_vectors():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed; the JS counter is checked where it is")
    script = (
        "const m = require(process.argv[1]); const cases = require(process.argv[2]).cases;"
        "const out = cases.map(c => m.count(c.text));"
        "process.stdout.write(JSON.stringify(out));"
    )
    result = subprocess.run([node, "-e", script, str(ROOT / "static/js/wizard.js"),
                             str(ROOT / "static/js/segment-vectors.json")],
                            capture_output=True, text=True, check=True, timeout=30)
    got = json.loads(result.stdout)
    for case, info in zip(VECTORS, got, strict=True):
        assert {k: info[k] for k in FIELDS} == {k: case[k] for k in FIELDS}, case["name"]


def test_every_gsm_extension_character_counts_two():
    for ch in "^{}\\[~]|€\f":
        info = segments.count(ch)
        assert (info.encoding, info.units) == ("GSM-7", 2), repr(ch)


def test_boundaries_follow_160_153_and_70_67():
    assert segments.count("x" * 160).segments == 1
    assert segments.count("x" * 161).segments == 2
    assert segments.count("x" * 153 * 3).segments == 3
    assert segments.count("x" * (153 * 3 + 1)).segments == 4
    assert segments.count("ж" * 70).segments == 1
    assert segments.count("ж" * 71).segments == 2
    assert segments.count("ж" * 67 * 3).segments == 3
    assert segments.count("ж" * (67 * 3 + 1)).segments == 4


def test_one_non_gsm_character_switches_everything_to_ucs2():
    info = segments.count("a" * 100 + "✓")
    assert info.encoding == "UCS-2" and info.segments == 2 and info.per_segment == 67


def test_data_coding():
    assert segments.data_coding("Hello €") == 0
    assert segments.data_coding("Привет") == 8
