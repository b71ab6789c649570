"""Files and folders replaced whole: written beside their place, fsynced, renamed in.

:func:`atomic_file` and :func:`atomic_folder` write into a hidden temporary name next to the
final one, fsync it, and rename it into place in one step; with ``overwrite`` the old folder is
renamed aside first and put back if the second rename fails. :func:`recover` heals what a killed
writer left: an ``--overwrite``'d folder renamed aside goes back, and dead temporaries go.
Only names descend made (``.tmp-``, ``.old-`` with the writer's process id) are ever touched.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_file", "atomic_folder", "recover"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then each folder, deepest first."""
    for dirpath, _, files in os.walk(folder, topdown=False):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _rename_into_place(tmp: Path, final: Path, overwrite: bool) -> Path | None:
    """Rename ``tmp`` to ``final``; with ``overwrite`` an existing ``final`` is first renamed
    aside (put back if the second rename fails). Returns the old folder's new path, or None."""
    if not final.exists():
        os.rename(tmp, final)
        return None
    if not overwrite:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final))
    old = final.parent / f".old-{final.name}-{os.getpid()}-{os.urandom(3).hex()}"
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    return old


def _writer_gone(name: str, prefix: str) -> bool:
    """Whether ``name`` is a hidden ``PREFIX...-PID-XXXXXX`` entry descend made whose writer
    process is gone (names of any other form are never touched)."""
    m = re.match(rf"^{re.escape(prefix)}(?:.+-)?(\d+)-[0-9a-f]{{6}}$", name)
    return m is not None and _pid_gone(int(m.group(1)))


def _pid_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs (one we may not signal still runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def recover(final: str | os.PathLike[str]) -> None:
    """Heal what a killed :func:`atomic_folder` left beside ``final``: an old folder renamed
    aside (``.old-NAME-PID-XXXXXX``) goes back to ``final`` when ``final`` is missing (a kill
    between the two renames of ``overwrite``), else it is removed; a temporary folder
    (``.tmp-NAME-PID-XXXXXX``) is removed. Only entries of those forms whose writer process is
    gone are touched."""
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return
    for kind in (".old-", ".tmp-"):
        for p in sorted(parent.glob(f"{kind}{glob.escape(final.name)}-*")):
            if not _writer_gone(p.name, f"{kind}{final.name}-"):
                continue
            if kind == ".old-" and not final.exists():
                os.rename(p, final)
            else:
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Write the file ``final`` whole or not at all: yield a hidden temporary sibling
    (``.NAME.tmp-PID``, same suffix) to write, then fsync it and rename it over ``final``; on
    any error (or Ctrl-C) the temporary file goes and ``final`` is as it was. Temporary files of
    that form (with or without the suffix) left by a killed writer of ``final`` are removed
    first."""
    final = Path(final)
    for q in final.parent.glob(f".{glob.escape(final.name)}.tmp-*"):
        m = re.fullmatch(  # (the suffix was not always there: older writers left it off)
            rf"\.{re.escape(final.name)}\.tmp-(\d+)(?:{re.escape(final.suffix)})?", q.name)
        if m is not None and q.is_file() and _pid_gone(int(m.group(1))):
            q.unlink(missing_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}{final.suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
        _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_folder(final: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Write the folder ``final`` whole or not at all: yield a hidden temporary sibling to
    fill, then move it into place in one rename.

    When the body returns, every file in the temporary folder is fsynced, then the folder
    itself; it is renamed to ``final`` (the commit point) and the parent folder is fsynced.
    When the body raises (or a step fails), the temporary folder is removed and ``final`` is
    as it was. The temporary folder is named ``.tmp-NAME-PID-XXXXXX``: :func:`list_runs`
    sweeps those whose writer process is gone.

    Args:
        final: the folder to create; its parent is created when missing.
        overwrite: replace an existing ``final``: it is renamed aside, the new folder renamed
            in, and only then is the old one deleted; if the swap fails, the old one is put
            back.

    Leftovers of a writer that was killed are healed first (:func:`recover`): an old folder
    renamed aside goes back when ``final`` is missing, hidden temporary folders go.

    Raises:
        FileExistsError: ``final`` exists (or appeared while writing) and ``overwrite`` is
            false.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{secrets.token_hex(3)}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        old = _rename_into_place(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# Writers for files inside an atomic_folder, which fsyncs them before the rename.
