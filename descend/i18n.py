"""Languages: English (the default) and Korean, through a standard gettext catalogue.

The catalogue is ``descend/locale/ko/LC_MESSAGES/descend.po``, compiled to ``descend.mo`` beside
it and shipped in the package (``make messages`` refreshes both; ``tests/catalogue.py`` holds the
extraction). Two ways a message reaches the catalogue:

* **at its source**, for what a learner reads: the demo's lines, ``--explain``, ``diagnose``,
  the stop reasons' messages and hints, the report's text. The text is wrapped in :func:`_`
  (``_("loss {loss:.4e}").format(loss=...)``: named fields, so a translation may reorder them)
  or, for a table of templates such as :data:`descend.stops.REASONS`, marked with :func:`N_`.
* **where it is shown**, for exceptions: an ``InputError`` is raised in English (``raise
  InputError(f"lr must be > 0, got {lr!r}")``) and translated by :func:`translate` when the CLI
  prints it, or by ``str(e)`` after :func:`set_language`. Its msgid is the f-string's template
  with the fields numbered in order (``"{0} must be > 0, got {1}"``), extracted from the source
  by an AST walk; :func:`translate` matches the message against those templates and fills the
  Korean one with the same values, so numbers read exactly as in English.

The language: :func:`set_language` (the Python API: English unless asked), and for the command
line :func:`choose`: ``--lang``, then ``DESCEND_LANG``, then the locale (``LC_ALL``,
``LC_MESSAGES``, ``LANG``: ``ko_KR.UTF-8`` picks Korean), else English.

argparse translates its own messages (``usage:``, ``invalid choice: ...``) through its module's
gettext function ``argparse._``; :func:`argparse_language` points it at this catalogue while the
command line runs, and puts it back afterwards.
"""

from __future__ import annotations

import gettext
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path

__all__ = ["LANGUAGES", "N_", "_", "argparse_language", "choose", "get_language",
           "set_language", "translate", "translate_tail"]

#: The languages descend speaks; the first is the default.
LANGUAGES = ("en", "ko")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_language = "en"


def set_language(lang: str | None) -> str:
    """Speak ``lang`` (``"en"`` or ``"ko"``; None: English) from now on: messages made after
    this call, and ``str()`` of any :class:`~descend.errors.InputError`. Returns the language."""
    global _language
    from . import errors

    lang = "en" if lang is None else str(lang).strip().lower()
    if lang not in LANGUAGES:
        raise errors.InputError(f"unknown language {lang!r}; descend speaks en, ko")
    _language = lang
    errors.translation = None if lang == "en" else translate
    return lang


def get_language() -> str:
    """The language messages are made in now (``"en"`` unless :func:`set_language` said)."""
    return _language


def choose(option: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The command line's language: ``option`` (``--lang``), else ``DESCEND_LANG``, else the
    locale's (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, the first that is set), else English."""
    env = os.environ if environ is None else environ
    if option:
        return option
    if env.get("DESCEND_LANG"):
        return env["DESCEND_LANG"]
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(var):
            return "ko" if env[var].lower().startswith("ko") else "en"
    return "en"


@cache
def _catalogue(lang: str) -> gettext.NullTranslations:
    return gettext.translation("descend", localedir=LOCALE_DIR, languages=[lang], fallback=True)


def _(message: str) -> str:
    """``message`` in the current language (itself in English, or when it has no entry)."""
    if _language == "en":
        return message
    return _catalogue(_language).gettext(message)


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue without translating it now (for tables of templates
    that are translated where they are filled in)."""
    return message


_FIELD = re.compile(r"\{(\d+)\}")


@cache
def _templates(lang: str) -> list[tuple[re.Pattern[str], str]]:
    """The catalogue's numbered templates as (pattern, translation), most literal text first."""
    cat = getattr(_catalogue(lang), "_catalog", {})
    out = []
    for msgid, msgstr in cat.items():
        if not isinstance(msgid, str) or not _FIELD.search(msgid) or not msgstr:
            continue
        parts = _FIELD.split(msgid)
        rx = "".join(re.escape(p.replace("{{", "{").replace("}}", "}")) if i % 2 == 0
                     else f"(?P<f{p}>.*?)" for i, p in enumerate(parts))
        literal = sum(len(p) for p in parts[::2])
        if literal >= 4:  # a template of fields alone would match any text
            out.append((literal, re.compile(rx, re.DOTALL), msgstr))
    out.sort(key=lambda t: -t[0])
    return [(rx, msgstr) for _, rx, msgstr in out]


def translate(text: str, lang: str | None = None) -> str:
    """A message made in English, in ``lang`` (default: the current language): its own entry, or
    the first numbered template it matches, filled with the same values (a value that is itself
    a phrase with an entry is translated too). Unknown text comes back unchanged."""
    lang = lang or _language
    if lang == "en" or not text:
        return text
    cat = _catalogue(lang)
    exact = cat.gettext(text)
    if exact != text:
        return exact
    for rx, msgstr in _templates(lang):
        m = rx.fullmatch(text)
        if m is None:
            continue
        values = {int(k[1:]): v for k, v in m.groupdict().items()}
        args = [translate(values[i], lang) if " " in values[i] else values[i]
                for i in range(max(values) + 1)]
        try:
            return msgstr.format(*args)
        except (IndexError, KeyError, ValueError):  # a broken entry: English, never a crash
            return text
    return text


def translate_tail(text: str) -> str:
    """:func:`translate`, or else the longest part after a ``": "`` that has a translation
    (argparse puts its own, already translated, ``argument --lr: `` before a type's message)."""
    out = translate(text)
    if out != text or _language == "en":
        return out
    at = text.find(": ")
    while at >= 0:
        tail = translate(text[at + 2:])
        if tail != text[at + 2:]:
            return text[:at + 2] + tail
        at = text.find(": ", at + 2)
    return text


@contextmanager
def argparse_language() -> Iterator[None]:
    """While inside, argparse's own messages (usage, errors, section titles) come from this
    catalogue in the current language."""
    import argparse

    if _language == "en":
        yield
        return
    saved = argparse.__dict__.get("_")
    argparse._ = _  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._ = saved  # type: ignore[attr-defined]


#: argparse's own messages that descend's command line can show (its gettext msgids).
ARGPARSE = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("show program's version number and exit"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("expected one argument"),
    N_("invalid %(type)s value: %(value)r"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("expected at least one argument"),
    N_("not allowed with argument %s"),
    N_("one of the arguments %s is required"),
)
