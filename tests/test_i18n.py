"""Languages: the Korean catalogue is complete and compiled, and what a learner reads (the demo,
--explain, diagnose, stop reasons, CLI errors) comes out in Korean with the numbers unchanged,
while English stays exactly as it was."""

from __future__ import annotations

import argparse
import gettext
import json
import re
import string

import pytest
import torch
from catalogue import MO, PO, all_ids, read_catalogue
from cli_run import run
from test_cli import BAD

import descend
from descend import i18n, stops
from descend.errors import InputError

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# numbers as printed: 7.0060e-06, 0.6049, 1e-05, -1.0, 19 (not the digits inside names)
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![A-Za-z0-9_])")


def numbers(text: str) -> list[str]:
    return sorted(NUMBER.findall(text))


def same_numbers_in_korean(english: str, korean: str) -> None:
    """Line for line: the Korean line has Hangul and the English line's numbers."""
    en, ko = english.splitlines(), korean.splitlines()
    assert len(en) == len(ko), (english, korean)
    for e, k in zip(en, ko):
        if not e.strip() or "-th Loss" in e or e.startswith(("tensor(", "        [")):
            assert e == k  # the notebook's own lines and blank lines stay as they are
            continue
        assert HANGUL.search(k), f"no Hangul in {k!r} (for {e!r})"
        assert numbers(e) == numbers(k), (e, k)


# ---------------------------------------------------------------------------- the catalogue


def _fields(text: str) -> set[str]:
    """The fields a message fills: str.format names (``{0}``, ``{loss}``) and ``%`` ones."""
    out = {f"%{m}" for m in re.findall(r"%(\(\w+\)[a-z]|[a-z])", text)}
    out |= {f"{{{name}}}" for _, name, _, _ in string.Formatter().parse(text)
            if name is not None}
    return out


def test_every_message_id_has_a_korean_translation_with_the_same_fields():
    ids = all_ids()
    catalogue = read_catalogue()
    missing = [f"{where}: {msgid!r}" for msgid, where in ids.items() if not catalogue.get(msgid)]
    assert not missing, ("untranslated messages (run `make messages` and translate them in "
                         f"{PO}):\n" + "\n".join(missing))
    for msgid in ids:
        assert _fields(catalogue[msgid]) == _fields(msgid), (msgid, catalogue[msgid])
    # the extraction sees every kind of message: errors, notes, help, stop reasons, argparse
    for msgid in ("{0} must be a finite number {1}, got {2}",
                  "{0} is not UTF-8; read it as cp949 (CP949/EUC-KR, Korean Excel's CSV "
                  "export); pass --encoding NAME if that is wrong",
                  "print only the summaries", stops.REASONS["diverged"][1],
                  "unrecognized arguments: %s", "x: stopped after {nit} iterations, {message} "
                  "[{reason}]"):
        assert msgid in ids


def test_the_shipped_mo_is_compiled_from_the_current_po():
    with open(MO, "rb") as f:
        compiled = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    compiled = {k: v for k, v in compiled.items() if k}  # "" is the header
    assert compiled == {k: v for k, v in read_catalogue(PO).items() if v}


# ---------------------------------------------------------------------------- the language


def test_language_order_option_then_descend_lang_then_locale_then_english():
    assert i18n.choose("ko", {"DESCEND_LANG": "en"}) == "ko"
    assert i18n.choose(None, {"DESCEND_LANG": "ko", "LANG": "en_US.UTF-8"}) == "ko"
    assert i18n.choose(None, {"LANG": "ko_KR.UTF-8"}) == "ko"
    assert i18n.choose(None, {"LC_ALL": "C", "LANG": "ko_KR.UTF-8"}) == "en"
    assert i18n.choose(None, {}) == "en"


def test_locale_and_descend_lang_pick_the_cli_language(monkeypatch, capsys):
    monkeypatch.delenv("DESCEND_LANG")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "ko_KR.UTF-8")
    rc, _, err = run(["demo", "--max-iters", "0"], capsys)
    assert rc == 2 and err == ("descend demo: 오류: max_iter는 1 이상의 정수여야 하는데 "
                               "0을(를) 받았습니다\n")
    monkeypatch.setenv("DESCEND_LANG", "en")
    rc, _, err = run(["demo", "--max-iters", "0"], capsys)
    assert err == "descend demo: error: max_iter must be a whole number >= 1, got 0\n"
    rc, _, err = run(["demo", "--max-iters", "0", "--lang", "ko"], capsys)
    assert err.startswith("descend demo: 오류: ")
    assert i18n.get_language() == "en" and argparse._ is gettext.gettext  # put back


def test_python_api_keeps_english_exceptions_unless_asked():
    with pytest.raises(InputError) as e:
        stops.MaxIter(0)
    assert str(e.value) == "max_iter must be a whole number >= 1, got 0"
    try:
        assert descend.set_language("ko") == "ko"
        assert str(e.value) == "max_iter는 1 이상의 정수여야 하는데 0을(를) 받았습니다"
        # made in English, shown in Korean: the args keep the English text
        assert e.value.args[0] == "max_iter must be a whole number >= 1, got 0"
    finally:
        descend.set_language("en")
    assert str(e.value) == "max_iter must be a whole number >= 1, got 0"
    with pytest.raises(InputError, match="unknown language 'fr'; descend speaks en, ko"):
        descend.set_language("fr")


def test_unknown_text_comes_back_unchanged():
    assert i18n.translate("no such message, 1.5", "ko") == "no such message, 1.5"
    assert i18n.translate("unknown rule 'x'; known rules: gd", "en") == (
        "unknown rule 'x'; known rules: gd")


# ---------------------------------------------------------------------------- what learners read


def test_demo_explain_in_korean_has_the_english_numbers(capsys):
    argv = ["demo", "--quiet", "--explain", "--no-record", "--model-iters", "50"]
    rc, en, _ = run(argv, capsys)
    assert rc == 0 and en.startswith("x: stopped after 19 iterations, loss 7.0060e-06 is at or "
                                     "below the threshold 1e-05 [loss_below]\n\nWhy it stopped:")
    rc, ko, _ = run([*argv, "--lang", "ko"], capsys)
    assert rc == 0
    same_numbers_in_korean(en, ko)
    assert ko.splitlines()[0] == ("x: 19번 반복 후 멈춤, 손실 7.0060e-06이(가) 임계값 1e-05 "
                                  "이하입니다 [loss_below]")


def test_demo_lines_in_korean_keep_the_notebook_lines(capsys):
    argv = ["demo", "--no-record", "--model-iters", "20", "--show-start"]
    rc, en, _ = run(argv, capsys)
    rc2, ko, _ = run([*argv, "--lang", "ko"], capsys)
    assert rc == rc2 == 0
    same_numbers_in_korean(en, ko)
    assert "\n1-th Loss: 5.9521e-02\n" in ko


@pytest.mark.parametrize("lr", ["1", "9.5"])
def test_diagnose_in_korean_has_the_english_numbers(lr, capsys):
    rc, en, _ = run(["diagnose", "--lr", lr], capsys)
    rc2, ko, _ = run(["diagnose", "--lr", lr, "--lang", "ko"], capsys)
    assert rc == rc2 == 0
    same_numbers_in_korean(en, ko)


def _sample(reason: str) -> dict[str, object]:
    values = {"iteration": 17, "loss": 0.012345, "grad_norm": 3.2e-7, "best_loss": 0.0101,
              "threshold": 1e-5, "tol": 1e-6, "rtol": 1e-8, "patience": 10, "n": 300,
              "seconds": 2.5, "scaled": 4.4e-9, "move": 0.018, "factor": 1e4, "scale": 0.25,
              "train_loss": 0.031, "val_loss": 0.042, "min_delta": 0.0, "best": 0.0405,
              "best_epoch": 12, "what": "the loss still falls", "monitor": "validation loss",
              "signal": "SIGTERM",
              "hint": "the problem may be badly scaled or too ill-conditioned for float32: try "
                      "float64 (x0.double()), rescaling the parameters to similar sizes, or "
                      "another start"}
    return values


@pytest.mark.parametrize("reason", sorted(stops.REASONS))
def test_every_stop_reason_message_in_korean(reason):
    template = stops.REASONS[reason][1]
    fields = _sample(reason)
    english = template.format(**fields)
    try:
        i18n.set_language("ko")
        korean = i18n._(template).format(**{k: i18n.translate(v) if isinstance(v, str) else v
                                            for k, v in fields.items()})
    finally:
        i18n.set_language("en")
    assert HANGUL.search(korean) and numbers(korean) == numbers(english), (english, korean)
    assert "the loss still falls" not in korean and "badly scaled" not in korean


def test_a_run_made_in_korean_says_why_it_stopped_in_korean():
    p = descend.problems.notebook(0)
    try:
        descend.set_language("ko")
        res = descend.minimize(p.fn, p.x0, rule="gd", lr=10.0, stop=stops.LossBelow(1e-5))
        text = res.explain()
    finally:
        descend.set_language("en")
    assert res.reason == "diverged"
    assert res.message.startswith("발산했습니다: 손실 ") and "[diverged]" in text
    en = descend.minimize(p.fn, p.x0, rule="gd", lr=10.0, stop=stops.LossBelow(1e-5))
    assert numbers(en.message) == numbers(res.message)
    same_numbers_in_korean(en.explain(), text)


@pytest.mark.parametrize(("argv", "line"), BAD, ids=[" ".join(a) or "none" for a, _ in BAD])
def test_every_cli_error_of_the_table_in_korean(argv, line, capsys):
    rc, out, err = run([*argv, "--lang", "ko"], capsys)
    assert (rc, out) == (2, "")
    assert err.count("\n") == 1 and HANGUL.search(err), err
    assert numbers(err) == numbers(line), (line, err)
    assert err.split(": ")[0] == line.split(": ")[0]  # "descend demo" / "descend"


def test_help_in_korean(capsys):
    rc, out, _ = run(["fit", "--help", "--lang", "ko"], capsys)
    assert rc == 0
    assert out.startswith("사용법: descend fit ")
    assert "학습 데이터: CSV 또는 Parquet (.parquet, .pq) 파일" in out
    assert "--lang {en,ko}" in out


def test_a_cp949_csv_with_encoding_option_and_a_korean_note(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, generator=g)
    rows = ["면적,가격"] + [f"{v:.4f},{2 * v + 1:.4f}" for v in x.tolist()]
    (tmp_path / "집값.csv").write_bytes("\n".join(rows).encode("cp949"))
    base = ["fit", tmp_path / "집값.csv", "--target", "가격", "--quiet", "--no-record"]
    rc, out, err = run([*base, "--encoding", "cp949", "--out", tmp_path / "m"], capsys)
    assert rc == 0 and err == "", err
    assert "train: " in out
    rc, out, err = run([*base, "--out", tmp_path / "m2", "--lang", "ko"], capsys)
    assert rc == 0
    assert err.splitlines()[0] == ("descend fit: 알림: 집값.csv은(는) UTF-8이 아니어서 cp949"
                                   "(CP949/EUC-KR, 한국어 엑셀의 CSV 내보내기)로 읽었습니다; "
                                   "틀렸다면 --encoding NAME을 주세요")


def test_fit_and_predict_say_what_they_did_in_korean(tmp_path, capsys):
    """The lines of ``descend fit`` and ``predict`` after the run, line for line in Korean with
    the English numbers (the wall time aside)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, generator=g)
    rows = ["area,price"] + [f"{v:.4f},{2 * v + 1:.4f}" for v in x.tolist()]
    (tmp_path / "prices.csv").write_text("\n".join(rows))
    said = {}
    for lang in ("en", "ko"):
        out_dir = tmp_path / lang
        rc, out, err = run(["fit", tmp_path / "prices.csv", "--target", "price", "--quiet",
                            "--no-record", "--epochs", "20", "--val", "0.25", "--out", out_dir,
                            "--lang", lang], capsys)
        assert rc == 0 and err == "", err
        rc, _, err = run(["predict", out_dir, tmp_path / "prices.csv", "-o",
                          tmp_path / f"{lang}.csv", "--lang", lang], capsys)
        assert rc == 0
        said[lang] = re.sub(r"[\d.]+ ?(s|초)\)", "T)", out.replace(str(out_dir), "OUT")) + err
    lines = said["en"].splitlines()
    assert lines[0].startswith("method: lbfgs with strong Wolfe line search")
    assert re.fullmatch(r"stopped after \d+ epochs \(\d+ iterations, T\): .+ \[converged\]",
                        lines[1])
    same_numbers_in_korean(said["en"], said["ko"])
    assert said["ko"].splitlines()[-1] == f"예측 40개를 {tmp_path / 'ko.csv'}에 썼습니다"


def test_the_report_speaks_the_language(tmp_path, capsys):
    from descend import store
    from descend.report import render_report

    root = tmp_path / "runs"
    assert run(["demo", "--quiet", "--runs", root, "--model-iters", "5"], capsys)[0] == 0
    runs = [store.open_run(root, r["id"]) for r in store.list_runs(root)]
    en = render_report(runs, "The notebook: x pulled to the target by gradient descent")
    assert '<html lang="en">' in en and '"text":{}' in en
    try:
        i18n.set_language("ko")
        ko = render_report(runs, i18n._("The notebook: x pulled to the target by gradient "
                                         "descent"))
    finally:
        i18n.set_language("en")
    assert '<html lang="ko">' in ko
    for words in ("손실 곡면 위의 경로", "손실 (로그 눈금)", "노트북: 경사 하강법으로"):
        assert json.dumps(words)[1:-1] not in en and json.dumps(words)[1:-1] in ko
