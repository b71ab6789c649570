"""The message catalogue's ids, extracted from the source, and its upkeep (``make messages``).

What is extracted (see :mod:`descend.i18n`):

* ``_("...")`` and ``N_("...")`` with a literal string: the text as it is;
* the message of every exception of :mod:`descend.errors` (and argparse's
  ``ArgumentTypeError``) made from a literal or an f-string, and every ``notes.append(...)``
  (the CLI's notes): the template, each f-string field numbered in order (``{0}``, ``{1}``...);
* the command line's help: every ``help`` and ``description`` of :func:`descend.cli._parser`.

``python tests/catalogue.py`` merges the ids into ``descend/locale/ko/LC_MESSAGES/descend.po``
(keeping every translation, new ids empty, ids no longer in the source dropped), compiles the
``.mo`` beside it, and lists the ids still without a translation (exit status 1 when any).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "descend"
PO = PACKAGE / "locale" / "ko" / "LC_MESSAGES" / "descend.po"
MO = PO.with_suffix(".mo")


def _error_classes() -> set[str]:
    tree = ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    return names | {"ArgumentTypeError"}


def template(node: ast.AST) -> str | None:
    """The msgid of a literal or an f-string: fields numbered in order; None for anything
    else (a variable, a concatenation with ``+``, ``%`` or ``.format``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        out, k = [], 0
        for v in node.values:
            if isinstance(v, ast.Constant):
                out.append(str(v.value).replace("{", "{{").replace("}", "}}"))
            else:
                out.append(f"{{{k}}}")
                k += 1
        return "".join(out)
    return None


def _name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def source_ids() -> dict[str, str]:
    """msgid -> where it was found (``file:line``), from every module of descend/."""
    errors = _error_classes()
    out: dict[str, str] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name, arg = _name(node.func), node.args[0]
            msgid = None
            if name in ("_", "N_") and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                msgid = arg.value
            elif name in errors or (name == "append" and _name(getattr(node.func, "value", None))
                                    == "notes"):
                msgid = template(arg)
            if msgid and msgid.strip():
                out.setdefault(msgid, f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def help_ids() -> dict[str, str]:
    """Every help and description the command line shows."""
    from descend.cli import _parser

    out: dict[str, str] = {}

    def walk(p: argparse.ArgumentParser, where: str) -> None:
        if p.description:
            out.setdefault(p.description, where)
        for a in p._actions:
            if a.help and a.help != argparse.SUPPRESS:
                out.setdefault(a.help, where)
            if isinstance(a, argparse._SubParsersAction):
                for c in a._choices_actions:
                    if c.help:
                        out.setdefault(c.help, where)
                for name, sub in a.choices.items():
                    walk(sub, f"{where} {name}")

    walk(_parser(), "descend --help")
    return out


def all_ids() -> dict[str, str]:
    """Every message id the catalogue must translate, with where it comes from."""
    return {**help_ids(), **source_ids()}


def read_catalogue(path: Path = PO) -> dict[str, str]:
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        cat = read_po(f)
    return {m.id: m.string for m in cat if m.id and isinstance(m.id, str)}


def update() -> list[str]:
    """Merge the source's ids into the .po, compile the .mo; return the untranslated ids."""
    from babel.messages.catalog import Catalog
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import write_po

    old = read_catalogue() if PO.exists() else {}
    cat = Catalog(locale="ko", domain="descend", project="descend", charset="utf-8",
                  fuzzy=False)  # the header is checked, not a draft
    missing = []
    for msgid, where in sorted(all_ids().items(), key=lambda kv: (kv[1], kv[0])):
        file, _, line = where.partition(":")
        cat.add(msgid, old.get(msgid, ""), locations=[(file, int(line) if line.isdigit() else 0)])
        if not old.get(msgid):
            missing.append(msgid)
    PO.parent.mkdir(parents=True, exist_ok=True)
    with open(PO, "wb") as f:
        write_po(f, cat, width=100, omit_header=False, sort_output=False)
    with open(MO, "wb") as f:
        write_mo(f, cat)
    return missing


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    todo = update()
    for m in todo:
        print(f"untranslated: {m!r}")
    print(f"{PO.relative_to(ROOT)}: {len(read_catalogue())} messages, {len(todo)} untranslated")
    sys.exit(1 if todo else 0)
