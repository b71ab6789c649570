"""The kill test's driver (tests/test_resume_kill.py runs it in a subprocess): imports descend
once, then runs each attempt in a forked child that is SIGKILLed (a real kill: no handler, no
cleanup) at a chosen moment, or signalled with SIGINT/SIGTERM; prints a JSON summary.

    python tests/kill_driver.py WORKDIR SEED
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)

import descend  # noqa: E402
from descend import atomic, checkpoint, objective, store  # noqa: E402
from descend.cli import main  # noqa: E402
from descend.models import load_model  # noqa: E402


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(n: int, action: Any) -> Any:
    """A counter that runs ``action`` at its ``n``-th call."""
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == n:
            action()
    return tick


def _arm(kind: str, n: float) -> None:
    """In the child: make it die (or get a signal) at the chosen moment."""
    if kind == "time":  # at a moment in wall time, wherever the child is then; on a fast
        threading.Timer(n, _die).start()  # machine the run could finish first: so it also
        kind, n = "step", 150  # dies at its 150th evaluation if the timer has not fired yet
    if kind in ("step", "sigint", "sigterm", "sigint2"):
        sig = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigint2": signal.SIGINT}

        def act() -> None:
            if kind == "step":
                _die()
            os.kill(os.getpid(), sig[kind])
            if kind == "sigint2":
                os.kill(os.getpid(), signal.SIGINT)

        tick = _after(int(n), act)
        call = objective.Objective.__call__

        def counted(self: Any) -> Any:
            tick()
            return call(self)

        objective.Objective.__call__ = counted  # type: ignore[method-assign]
        return
    if kind in ("ckpt-fsync", "ckpt-rename"):  # inside a checkpoint write
        tick = _after(int(n), _die)
        if kind == "ckpt-fsync":  # the temporary file written, not yet renamed
            real_fsync = os.fsync

            def fsync(fd: int) -> None:
                name = os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1]
                if name.startswith(".tmp-") and name.endswith(".pt"):
                    tick()
                real_fsync(fd)

            checkpoint.os.fsync = fsync  # type: ignore[attr-defined]
        else:  # between the renames: latest.pt already became previous.pt
            real_replace = os.replace

            def replace(src: Any, dst: Any) -> None:
                if str(dst).endswith(checkpoint.LATEST):
                    tick()
                real_replace(src, dst)

            checkpoint.os.replace = replace  # type: ignore[attr-defined]
        return
    if kind == "out":  # the new --out model whole in its temporary folder, not renamed
        atomic._fsync_tree = lambda folder: _die()  # type: ignore[assignment]
        return
    if kind == "record":  # writing the run record's history
        store._write_history = lambda path, cols: _die()  # type: ignore[assignment]
        return
    raise ValueError(kind)


def child(argv: list[str] | None, kill: tuple[str, float] | None, log: Path,
          fn: Any = None) -> str:
    """Run ``descend ARGV`` (or ``fn()``) in a forked child; its exit status or the signal."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if kill is not None:
                _arm(*kill)
            code = main(argv) if argv is not None else fn()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return str(os.WEXITSTATUS(status))


def weights_equal(a: Path, b: Path) -> bool:
    wa = torch.load(a / "weights.pt", weights_only=True)
    wb = torch.load(b / "weights.pt", weights_only=True)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def started(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if (p / "command.json").is_file()] if root.is_dir() else []


def checks(root: Path, out: Path) -> dict[str, Any]:
    """After a kill: what is visible must be whole."""
    visible = store.list_runs(root)
    for r in visible:  # a run listed is a whole record
        store.open_run(root, r["id"])
    loaded = None
    for p in started(root):
        if any((p / "checkpoint" / n).exists() for n in (checkpoint.LATEST, checkpoint.PREVIOUS)):
            body, _ = checkpoint.load(p / "checkpoint")  # checksum-checked: never corrupt
            loaded = body["iteration"]
    load_model(out)  # the previous (or the new) model is usable
    return {"runs": len(visible), "checkpoint": loaded}


def fit_kills(work: Path, rng: random.Random) -> dict[str, Any]:
    csv = work / "data.csv"
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4800, 6, generator=g, dtype=torch.float64)
    y = X @ torch.randn(6, 1, generator=g, dtype=torch.float64) + torch.sin(X[:, :1])
    lines = ["x0,x1,x2,x3,x4,x5,y"] + [",".join(repr(v) for v in row)
                                        for row in torch.cat([X, y], 1).tolist()]
    csv.write_text("\n".join(lines) + "\n")
    opts = ["fit", str(csv), "--target", "y", "--model", "mlp:16", "--batch-size", "32",
            "--epochs", "10", "--rule", "adam", "--quiet"]
    log = work / "fit.log"
    base, out, root = work / "base", work / "model", work / "runs"
    status: dict[str, Any] = {}
    one_epoch = [("1" if v == "10" else v) for v in opts]  # an older model at --out, trained
    with open(log, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        status["old"] = str(main([*one_epoch, "--out", str(out), "--no-record"]))  # here: it
        # imports what the children would import again (pyarrow, ...) once
    assert weights_equal(out, out)
    status["base"] = child([*opts, "--out", str(base), "--no-record"], None, log)
    argv = [*opts, "--out", str(out), "--overwrite", "--runs", str(root),
            "--checkpoint-every", "100"]
    kills: list[tuple[str, float]] = [("step", rng.randint(120, 300))]
    middle = [("step", rng.randint(50, 300)), ("step", rng.randint(50, 300)),
              ("time", rng.uniform(0.1, 0.6)), ("time", rng.uniform(0.1, 0.6)),
              ("ckpt-fsync", rng.randint(1, 3)), ("ckpt-rename", rng.randint(1, 3))]
    rng.shuffle(middle)
    kills += [*middle, ("out", 1), ("record", 1), ("out", 1)]
    trail = []
    for i, kill in enumerate(kills):
        if i == 0:
            got = child(argv, kill, log)
        else:
            (rid,) = started(root)
            got = child(["resume", rid.name, "--runs", str(root)], kill, log)
        trail.append({"kill": list(kill), "status": got, **checks(root, out)})
    (rid,) = started(root)
    status["final"] = child(["resume", rid.name, "--runs", str(root)], None, log)
    status["trail"] = trail
    status["equal"] = weights_equal(out, base)
    runs = store.list_runs(root)
    status["runs"] = [(r["id"], r["reason"], r["nit"]) for r in runs]
    status["rid"] = rid.name
    status["leftovers"] = sorted(p.name for p in root.rglob(".tmp-*"))

    # SIGINT: exit 130, the record says interrupted, the checkpoint resumes to the same end
    r2, m2 = work / "runs2", work / "model2"
    argv2 = [*opts, "--out", str(m2), "--runs", str(r2), "--checkpoint-every", "40"]
    status["sigint"] = child(argv2, ("sigint", 100), log)
    (rid2,) = started(r2)
    status["sigint_record"] = json.loads((rid2 / "result.json").read_text())
    status["sigint_model"] = (m2 / "weights.pt").is_file()
    status["sigint_resume"] = child(["resume", rid2.name, "--runs", str(r2)], None, log)
    status["sigint_equal"] = weights_equal(m2, base)
    status["sigint_final"] = json.loads((rid2 / "result.json").read_text())["reason"]
    # SIGTERM: exit 143; a second Ctrl-C: at once, no record, the last whole checkpoint kept
    r3, m3 = work / "runs3", work / "model3"
    status["sigterm"] = child([*opts, "--out", str(m3), "--runs", str(r3)], ("sigterm", 50),
                              log)
    (rid3,) = started(r3)
    status["sigterm_reason"] = json.loads((rid3 / "result.json").read_text())["reason"]
    r4, m4 = work / "runs4", work / "model4"
    status["sigint2"] = child([*opts, "--out", str(m4), "--runs", str(r4),
                               "--checkpoint-every", "10"], ("sigint2", 45), log)
    (rid4,) = started(r4)
    status["sigint2_record"] = (rid4 / "result.json").exists()
    status["sigint2_checkpoint"] = checkpoint.load(rid4 / "checkpoint")[0]["iteration"]
    status["log"] = log.read_text()[-3000:]
    return status


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def minimize_kills(work: Path, rng: random.Random, rule: str, lr: float | None,
                   max_iter: int, span: tuple[int, int], every: int) -> dict[str, Any]:
    x0 = torch.tensor([-1.2, 1.0] * 4, dtype=torch.float64)
    full = descend.minimize(rosenbrock, x0, rule=rule, lr=lr, max_iter=max_iter)
    folder, final = work / f"ckpt-{rule}", work / f"x-{rule}.pt"
    log = work / f"{rule}.log"

    def go() -> int:
        res = descend.minimize(rosenbrock, x0, rule=rule, lr=lr, max_iter=max_iter,
                               checkpoint=folder, checkpoint_every=every,
                               resume=folder if (folder / checkpoint.LATEST).exists()
                               or (folder / checkpoint.PREVIOUS).exists() else None)
        torch.save({"x": res.x, "nit": res.nit, "reason": res.reason}, final)
        return 0

    kills = [("step", rng.randint(*span)) for _ in range(3)] + [("ckpt-rename", 2),
                                                                ("ckpt-fsync", 1)]
    trail = [child(None, kill, log, go) for kill in kills]
    done = child(None, None, log, go)
    got = torch.load(final, weights_only=True)
    return {"trail": trail, "final": done, "equal": torch.equal(got["x"], full.x),
            "nit": [got["nit"], full.nit], "reason": [got["reason"], full.reason]}


if __name__ == "__main__":
    work, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    summary = {
        "adam": minimize_kills(work, rng, "adam", 1e-2, 600, (40, 120), 25),
        "lbfgs": minimize_kills(work, rng, "lbfgs", None, 400, (8, 20), 3),
        "fit": fit_kills(work, rng),
    }
    print(json.dumps(summary))
