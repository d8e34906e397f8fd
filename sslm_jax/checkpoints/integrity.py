"""A manifest of every file of a checkpoint step (size + CRC32), written inside Orbax's commit, and its check.

    verify(step_dir)             # None when intact, else one phrase: "state/d/3f.. is 81920 bytes, 163840 expected"
    intact_steps(checkpoints)    # [(step_dir, problem or None), ...], newest first

What orbax-checkpoint 0.12.x guarantees, and what the manifest adds:

- A step is written into `<step>.orbax-checkpoint-tmp-<t>` and renamed to `<step>` only after every item of every
  host is written (`CheckpointManager` → `AsyncCheckpointer._make_on_commit_callback`: the handler's `finalize`,
  then the rename). A process killed mid-save leaves only the temporary folder, which readers ignore.
- Nothing protects a *committed* step afterwards: a file truncated or deleted by a disk fault, a full disk during a
  copy, an operator's `rsync` cut short. Orbax then fails deep in TensorStore, and a truncated `vocab.txt` or
  `config.json` loads silently. (Keep-N deletion, file by file in Orbax, is made safe from kills in `deletion`.)

The manifest is the item `manifest/manifest.json`. `CompositeCheckpointHandler.finalize` finalizes the items in the
order they were registered, and `layout.handler_registry` registers this one last, so when `ManifestHandler.finalize`
runs, every other item of the step (state, config, vocab, data) is complete in the temporary step folder, and the
rename that commits the step comes after it. A committed step therefore always has a manifest describing its final
bytes; a step without one was written by an older sslm_jax (accepted, unverified). Orbax's own files at the top of
the step (`_CHECKPOINT_METADATA`, rewritten while committing, and `commit_success.txt`) are left out. CRC32 finds
accidental damage (truncation, lost or flipped blocks), not tampering; checking a step reads each of its bytes once.

On several hosts, process 0 writes the manifest after Orbax's finalize barrier, when every host's files are in
place (a shared filesystem, as multi-host Orbax requires).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib

import jax
import orbax.checkpoint as ocp
from etils import epath

MANIFEST_ITEM, MANIFEST_FILE = "manifest", "manifest.json"
# Written by Orbax itself into the step folder while it commits the step, after our finalize: not vouched for.
_ORBAX_OWN = frozenset({"_CHECKPOINT_METADATA", "commit_success.txt"})
_CHUNK = 1 << 20


def _crc32(path: epath.Path) -> str:
    crc = 0
    with epath.Path(path).open("rb") as f:
        while block := f.read(_CHUNK):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def describe(step_dir: epath.Path) -> dict[str, dict[str, int | str]]:
    """{path relative to `step_dir`: {"bytes": size, "crc32": hex}} of every file but the manifest and Orbax's own."""
    step_dir = epath.Path(step_dir)
    files = {}
    for path in _files_under(step_dir, skip=_ORBAX_OWN | {MANIFEST_ITEM}):
        files[os.fspath(path.relative_to(step_dir))] = {"bytes": path.stat().length, "crc32": _crc32(path)}
    return files


def _files_under(folder: epath.Path, *, skip=frozenset()):
    """Every file below `folder`, sorted (epath's rglob refuses `**` on every backend)."""
    for path in sorted(folder.iterdir()):
        if path.name in skip:
            continue
        if path.is_dir():
            yield from _files_under(path)
        else:
            yield path


@dataclasses.dataclass
class ManifestSave(ocp.args.CheckpointArgs):
    """The manifest item's save argument; it carries nothing: the manifest is computed at finalize."""


class ManifestHandler(ocp.CheckpointHandler):
    """Writes `manifest/manifest.json` at finalize, after every other item of the step (see the module docstring)."""

    def save(self, directory: epath.Path, args: ManifestSave):
        del args
        epath.Path(directory).mkdir(parents=True, exist_ok=True)

    def restore(self, directory: epath.Path, args=None):
        return json.loads((epath.Path(directory) / MANIFEST_FILE).read_text())

    def finalize(self, directory: epath.Path):
        if jax.process_index() != 0:
            return
        directory = epath.Path(directory)
        step_dir = directory.parent
        unfinished = [p.name for p in step_dir.iterdir() if ocp.path.step.is_path_temporary(p) and p != directory]
        if unfinished:  # the ordering this relies on changed: say so rather than vouch for half a step
            raise RuntimeError(f"{step_dir}: items {unfinished} are not finalized before the manifest")
        manifest = {"version": 1, "files": describe(step_dir)}
        tmp = directory / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.rename(directory / MANIFEST_FILE)


def verify(step_dir: str | os.PathLike, *, only: str = "") -> str | None:
    """None when every file the step's manifest lists has its size and CRC32 (or the step predates manifests);
    otherwise what is wrong, as one short phrase naming the first bad file. `only="vocab/"` checks just the files
    under that prefix."""
    step_dir = epath.Path(step_dir)
    manifest = step_dir / MANIFEST_ITEM / MANIFEST_FILE
    if not (step_dir / MANIFEST_ITEM).exists():
        return None  # saved before manifests existed: nothing to check against
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST_ITEM}/{MANIFEST_FILE} is unreadable ({type(e).__name__})"
    for rel, expected in files.items():
        if not rel.startswith(only):
            continue
        path = step_dir / rel
        if not path.is_file():
            return f"{rel} is missing"
        size = path.stat().length
        if size != expected["bytes"]:
            return f"{rel} is {size} bytes, {expected['bytes']} expected"
        if _crc32(path) != expected["crc32"]:
            return f"{rel} has other contents than when saved (CRC32 mismatch)"
    return None


def total_bytes(step_dir: str | os.PathLike) -> int | None:
    """The size of a step's files as its manifest records them (None without a manifest)."""
    manifest = epath.Path(step_dir) / MANIFEST_ITEM / MANIFEST_FILE
    try:
        return sum(f["bytes"] for f in json.loads(manifest.read_text())["files"].values())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def committed_steps(folder: str | os.PathLike) -> list[epath.Path]:
    """The committed (renamed into place) step folders of a `checkpoints/` folder, newest first."""
    folder = epath.Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        (folder / str(step) for step in ocp.utils.checkpoint_steps(folder)), key=lambda p: int(p.name), reverse=True
    )
