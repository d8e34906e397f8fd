"""Keep-N deletion that never leaves a half-deleted step looking committed.

    make_deletion_atomic(manager)   # once, right after creating the trainer's CheckpointManager

Orbax 0.12 removes an old step (keep-N) file by file inside `<step>/` (`path.deleter.PathDeleter`, in parallel
threads on a local disk). A process killed meanwhile (kill -9, OOM, a node lost) leaves `<step>/` in place with some
files gone: by its name it is a committed step, and if its `manifest/` went first, `integrity.verify` takes it for a
step written before manifests and vouches for it. The next run's keep-N removes it again, but until then a reader
that falls back past damaged newer steps would pick it. Seen in CI: kill -9 at random steps left
`checkpoints/6/vocab/commit_success.txt` missing.

Here a step is first renamed to `<step>.orbax-checkpoint-tmp-deleting` (one atomic rename on a POSIX filesystem), and
only then removed. A kill after the rename leaves a folder Orbax already treats as an unfinished save: readers ignore
it and the next manager created with `cleanup_tmp_directories=True` removes it.

Object stores (gs://, s3://) have no atomic folder rename (GCS without HNS copies object by object), and Orbax
commits steps there with a `commit_success.txt` marker instead; Orbax's own deleter is kept for them.
"""

from __future__ import annotations

from typing import Sequence

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

_DELETING = ocp.path.step.TMP_DIR_SUFFIX + "-deleting"


def _is_local(path: epath.Path) -> bool:
    return "://" not in str(path)


def _remove(path: epath.Path) -> None:
    path.rmtree()  # a module function: tests interrupt it to stand for a kill in the middle


class RenameThenDeleteDeleter:
    """Orbax's `CheckpointDeleter` protocol (delete, delete_steps, close) for a local `checkpoints/` folder whose step
    folders are named by the step number alone (the trainer's layout). Process 0 deletes, as Orbax's deleter does."""

    def __init__(self, directory: epath.Path):
        self._directory = epath.Path(directory)

    def delete(self, step: int) -> None:
        if jax.process_index() != 0:
            return
        step_dir = self._directory / str(step)
        if not step_dir.is_dir():
            logging.warning("Checkpoint step %d to delete is not in %s.", step, self._directory)
            return
        doomed = self._directory / f"{step}{_DELETING}"
        if doomed.exists():  # a deletion of this step cut short earlier, not yet cleaned away
            _remove(doomed)
        step_dir.rename(doomed)
        _remove(doomed)
        logging.info("Deleted checkpoint step %d.", step)

    def delete_steps(self, steps: Sequence[int]) -> None:
        for step in steps:
            self.delete(step)

    def close(self) -> None:
        pass


def make_deletion_atomic(manager: ocp.CheckpointManager) -> None:
    """Replaces the manager's deleter by `RenameThenDeleteDeleter` for a local folder (the module docstring says why).
    An Orbax without the `_checkpoint_deleter` attribute keeps its own deleter, with a warning saying what that costs."""
    if not _is_local(manager.directory):
        return
    if not hasattr(manager, "_checkpoint_deleter"):
        logging.warning(
            "This orbax-checkpoint (%s) has no _checkpoint_deleter: a run killed while it deletes an old step can leave "
            "that step half-deleted until the next save removes it.",
            getattr(ocp, "__version__", "?"),
        )
        return
    manager._checkpoint_deleter = RenameThenDeleteDeleter(manager.directory)
