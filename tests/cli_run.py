"""Helpers for the command-line tests: run ``descend`` in-process and read its score lines."""

from __future__ import annotations

from descend.cli import main


def run(argv, capsys):
    """``descend ARGV`` in-process: (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def scores(text: str) -> dict[str, float]:
    """`name value` lines of `descend evaluate`."""
    return {k: float(v) for k, v in (ln.split() for ln in text.splitlines())}
