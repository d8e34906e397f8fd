"""Checks on the paths a command will write, made before it does any work: a file or folder that already exists is
never replaced, and a place that cannot be written is named in one line instead of a traceback after the work.

    check_new_file("preds.jsonl", setting="--output")     # SslmError if it exists or its folder cannot be written
    check_can_create("/mnt/out/vocab", setting="--out")    # SslmError if the path cannot be made under its ancestors
"""

from __future__ import annotations

import os
import pathlib
import tempfile

from sslm_jax.errors import SslmError


def _why_unwritable(folder: pathlib.Path) -> str | None:
    """Why a file cannot be created in the existing directory `folder`, or None. It creates and removes a temporary
    file: `os.access` says yes to root and to read-only mounts alike."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def check_can_create(path: str | os.PathLike, *, setting: str) -> pathlib.Path:
    """`path` as a Path, once its nearest existing ancestor is a folder this process can write in (the missing
    folders in between are made later by the writer). SslmError, one line, otherwise."""
    path = pathlib.Path(path)
    ancestor = path if path.exists() else next((p for p in path.parents if p.exists()), pathlib.Path("."))
    if not ancestor.is_dir():
        raise SslmError(f"{setting}={path}: {ancestor} is a file, not a folder")
    why = _why_unwritable(ancestor)
    if why:
        raise SslmError(f"{setting}={path}: cannot write in {ancestor} ({why})")
    return path


def check_new_directory(path: str | os.PathLike, *, setting: str) -> pathlib.Path:
    """`path` as a Path, refused (one line) unless it is absent or an empty folder, in an existing, writable folder."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise SslmError(f"{setting}={path} is a file; name a new directory")
    if path.exists() and any(path.iterdir()):
        raise SslmError(f"{setting}={path} exists and is not empty; name a new directory")
    if not path.parent.exists():
        raise SslmError(f"{setting}={path}: its folder {path.parent} does not exist")
    return check_can_create(path, setting=setting)  # a parent that is a file, or one this process cannot write in


def check_new_file(path: str | os.PathLike, *, setting: str) -> pathlib.Path:
    """`path` as a Path, refused (one line) if anything exists there, or if its folder is missing or unwritable."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise SslmError(f"{setting}={path} is a folder: name a new file")
    if path.exists() or path.is_symlink():
        raise SslmError(f"{setting}={path} already exists: name a new file (nothing is overwritten)")
    folder = path.parent
    if not folder.exists():
        raise SslmError(f"{setting}={path}: its folder {folder} does not exist")
    return check_can_create(path, setting=setting)
