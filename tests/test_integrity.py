"""Checkpoint manifests (sslm_jax/checkpoints/integrity.py): written inside Orbax's commit, and every kind of damage
found by `verify`; readers (`layout.latest_checkpoint`) skip a damaged step, the trainer moves it aside."""

import json
import os
import pathlib

import numpy as np
import orbax.checkpoint as ocp
import pytest

from sslm_jax.checkpoints import integrity, layout
from sslm_jax.errors import CheckpointError
from sslm_jax.training import checkpointing


def step_items(step):
    """A step's items as the trainer saves them: a state, a config and the manifest."""
    return ocp.args.Composite(
        state=ocp.args.StandardSave({"w": np.full((64, 64), step, np.float32)}),
        config=ocp.args.JsonSave({"task": "pretrain", "step": step}),
        manifest=integrity.ManifestSave(),
    )


def save_steps(folder, steps=(1, 2)):
    """Real Orbax steps (`step_items`), saved synchronously."""
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False, create=True)
    with ocp.CheckpointManager(folder, options=options, handler_registry=layout.handler_registry()) as manager:
        for step in steps:
            manager.save(step, args=step_items(step))
    return [folder / str(step) for step in steps]


@pytest.fixture
def workdir(tmp_path):
    save_steps(tmp_path / "checkpoints")
    return tmp_path


def biggest_file(step_dir):
    files = integrity.describe(step_dir)
    return step_dir / max(files, key=lambda name: files[name]["bytes"])


def test_manifest_lists_every_item_file(workdir):
    step_dir = workdir / "checkpoints" / "2"
    listed = json.loads((step_dir / "manifest" / "manifest.json").read_text())["files"]
    assert "config/config.json" in listed and any(name.startswith("state/") for name in listed)
    assert listed == integrity.describe(step_dir)  # written last: nothing changed after it
    assert integrity.verify(step_dir) is None
    assert not any("orbax-checkpoint-tmp" in name for name in listed)


@pytest.mark.parametrize("damage", ["truncate", "delete", "flip", "manifest"])
def test_verify_names_the_damaged_file(workdir, damage):
    step_dir = workdir / "checkpoints" / "2"
    target = biggest_file(step_dir)
    rel = os.fspath(target.relative_to(step_dir))
    if damage == "truncate":
        os.truncate(target, target.stat().st_size // 2)
        expected = f"{rel} is {target.stat().st_size} bytes"
    elif damage == "delete":
        target.unlink()
        expected = f"{rel} is missing"
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        expected = f"{rel} has other contents"
    else:
        (step_dir / "manifest" / "manifest.json").write_text('{"files": ')
        expected = "manifest/manifest.json is unreadable"
    assert expected in integrity.verify(step_dir)


def test_readers_skip_a_damaged_step_and_never_move_it(workdir, caplog):
    (workdir / "checkpoints" / "2" / "config" / "config.json").unlink()
    assert layout.latest_checkpoint(workdir) == workdir / "checkpoints" / "1"
    assert "config/config.json is missing" in caplog.text
    assert (workdir / "checkpoints" / "2").is_dir()
    with pytest.raises(CheckpointError, match="is damaged: config/config.json is missing"):
        layout.latest_checkpoint(workdir / "checkpoints" / "2")


def test_no_intact_step_is_one_error(workdir):
    for step in (1, 2):
        os.truncate(biggest_file(workdir / "checkpoints" / str(step)), 3)
    with pytest.raises(CheckpointError, match="no intact checkpoint in .*: step\\(s\\) 2, 1 are damaged"):
        layout.latest_checkpoint(workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    with pytest.raises(CheckpointError, match="no intact checkpoint in .*2: .* bytes.*1: .* bytes"):
        checkpointing.set_aside_damaged(workdir)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before, "nothing moved when nothing is left"


def test_trainer_moves_the_damaged_step_aside_and_orbax_ignores_it(workdir):
    damaged = workdir / "checkpoints" / "2"
    os.truncate(biggest_file(damaged), 5)
    content = sorted(os.fspath(p.relative_to(damaged)) for p in damaged.rglob("*"))
    (aside,) = map(pathlib.Path, checkpointing.set_aside_damaged(workdir))
    assert aside.name.startswith("2.corrupt-") and not damaged.exists()
    assert sorted(os.fspath(p.relative_to(aside)) for p in aside.rglob("*")) == content, "moved whole, not deleted"
    assert ocp.utils.checkpoint_steps(workdir / "checkpoints") == [1]
    assert layout.latest_checkpoint(workdir) == workdir / "checkpoints" / "1"
    assert checkpointing.set_aside_damaged(workdir) == []  # the newest step is intact now


def test_a_step_without_manifest_predates_them_and_is_accepted(tmp_path):
    (step_dir,) = save_steps(tmp_path / "checkpoints", steps=(3,))
    for file in (step_dir / "manifest").iterdir():
        file.unlink()
    (step_dir / "manifest").rmdir()
    assert integrity.verify(step_dir) is None


class Killed(BaseException):
    """Stands for kill -9 in the middle of a deletion (BaseException: nothing on the way catches it)."""


def test_keep_n_deletion_cut_short_leaves_no_committed_step_behind(tmp_path, monkeypatch):
    """Orbax deletes an old step file by file; the trainer's manager renames it out of the committed names first, so
    a kill in the middle leaves an unfinished-save folder, which the next manager removes."""
    import ml_collections

    from sslm_jax.checkpoints import deletion

    config = ml_collections.ConfigDict(dict(checkpoint_every_steps=1, keep_checkpoints=1))
    folder = tmp_path / "checkpoints"
    seen_while_removing = []

    def remove_one_file_then_die(path):
        seen_while_removing.append(sorted(p.name for p in folder.iterdir()))
        next(p for p in pathlib.Path(path).rglob("*") if p.is_file()).unlink()
        raise Killed

    manager = checkpointing.create_manager(tmp_path, config=config, async_save=False)
    manager.save(1, args=step_items(1), force=True)
    monkeypatch.setattr(deletion, "_remove", remove_one_file_then_die)
    with pytest.raises(Killed):
        manager.save(2, args=step_items(2), force=True)  # keep_checkpoints=1: deletes step 1 after committing 2
    assert seen_while_removing == [["1.orbax-checkpoint-tmp-deleting", "2"]], "renamed before the first file went"
    assert [p.name for p in integrity.committed_steps(folder)] == ["2"]
    assert layout.latest_checkpoint(tmp_path) == folder / "2"

    monkeypatch.undo()
    checkpointing.close_manager(checkpointing.create_manager(tmp_path, config=config))  # the restarted run's
    assert sorted(p.name for p in folder.iterdir()) == ["2"]
    manager = checkpointing.create_manager(tmp_path, config=config, async_save=False)
    manager.save(3, args=step_items(3), force=True)  # an uninterrupted deletion leaves nothing of step 2
    checkpointing.close_manager(manager)
    assert sorted(p.name for p in folder.iterdir()) == ["3"]
