"""Property-based (Hypothesis): random bytes and random small tables given to `descend fit`,
`predict` and `evaluate` are either used or refused in one line with exit status 2, never a
traceback. Derandomized and bounded (a fixed number of examples), so CI is deterministic."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from cli_run import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descend.cli import main

settings.register_profile(
    "descend-fuzz", derandomize=True, max_examples=30, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ = settings.get_profile("descend-fuzz")
_count = itertools.count()


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a trained regressor ``m`` (features x1, x2; target y)."""
    path = tmp_path_factory.mktemp("fuzz")
    rows = "".join(f"{i / 7},{(i * 3) % 5},{i / 7 - (i * 3) % 5 / 2}\n" for i in range(12))
    (path / "d.csv").write_text("x1,x2,y\n" + rows)
    assert main(["fit", str(path / "d.csv"), "--target", "y", "--out", str(path / "m"),
                 "--quiet", "--no-record"]) == 0
    return path


def _answered(argv: list[str | Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Run the command (an exception escaping main fails the test: a traceback); a refusal is
    exit 2 and one line on stderr."""
    rc, _, err = run(argv, capsys)
    assert rc in (0, 2), (rc, err)
    assert "Traceback" not in err
    if rc == 2:
        errors = [ln for ln in err.splitlines() if ": error: " in ln]
        assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err


def _all_commands(place: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = place / f"o{next(_count)}"
    _answered(["fit", data, "--target", "y", "--out", out, "--max-iter", "30", "--quiet",
               "--no-record"], capsys)
    _answered(["predict", place / "m", data, "--missing", "impute"], capsys)
    _answered(["evaluate", place / "m", data], capsys)


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".parquet", ".txt"]))
def test_random_bytes_are_used_or_refused_in_one_line(place, capsys, raw, suffix):
    data = place / f"bytes{next(_count)}{suffix}"
    data.write_bytes(raw)
    _all_commands(place, data, capsys)


_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["", "NA", "nan", "1e999", "-0", "0x10", "a", "1,5", '"', "é", "١"]),
    st.text(max_size=4),
)


def _csv_cell(v: object) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    text = str(v)
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


@FUZZ
@given(header=st.lists(st.sampled_from(["x1", "x2", "y", "z", ""]), min_size=1, max_size=4),
       rows=st.lists(st.lists(_cells, min_size=1, max_size=4), max_size=6))
def test_random_small_tables_are_used_or_refused_in_one_line(place, capsys, header, rows):
    data = place / f"table{next(_count)}.csv"
    lines = [",".join(header)] + [",".join(_csv_cell(v) for v in row) for row in rows]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _all_commands(place, data, capsys)
