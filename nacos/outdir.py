"""Output folders: checked before minutes of work, written through a temporary sibling, replaced in one rename.

A failure halfway leaves the old folder (or nothing) in place, never a half-written one; ``--force`` replaces a
folder, but never the current folder, one above it, or one that holds the command's own input.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence


class OutputFolderError(ValueError):
    """An output folder that cannot, or must not, be written."""


def is_cwd_or_above(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the current folder or one that holds it (replacing it would delete the user's work)."""
    out, cwd = Path(path).resolve(), Path.cwd().resolve()
    return out == cwd or out in cwd.parents


def unwritable(path: str | os.PathLike) -> str | None:
    """Why ``path`` (a file or folder, its parents perhaps missing) could not be created; None if it can."""
    existing = Path(path).resolve().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing}"
    return None


def held_input(path: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> str | None:
    """The first of ``inputs`` that lies inside the folder ``path`` (replacing it would delete that input)."""
    out = Path(path).resolve()
    return next((str(item) for item in inputs if out in Path(item).resolve().parents), None)


def check_output(path: str | os.PathLike, force: bool, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """The resolved output folder, after checking that writing it will work and destroy nothing it should not."""
    given = Path(path)
    if given.is_symlink():
        raise OutputFolderError(f"{given} is a symbolic link: give the folder itself, or a new path")
    out = given.resolve()
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{given} exists and is not a folder")
    if is_cwd_or_above(out):
        raise OutputFolderError(f"{given} is the current folder or one above it: give a folder of its own, "
                                f"e.g. {given / 'out'}")
    held = held_input(out, inputs)
    if held:
        raise OutputFolderError(f"{given} holds the input {held}: give another output folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputFolderError(f"{given} exists and is not empty (use --force to overwrite)")
    why = unwritable(out)
    if why:
        raise OutputFolderError(f"{given}: {why}")
    return out


@contextlib.contextmanager
def staged(out: Path, prefix: str = ".nacos-") -> Iterator[Path]:
    """Yield an empty temporary folder next to ``out``; on success it becomes ``out`` (replacing it)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
    except OSError as e:
        raise OutputFolderError(f"{out}: cannot write there ({e.strerror or e})") from None
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); the result is an ordinary folder
        if out.is_symlink() or out.is_file():
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
