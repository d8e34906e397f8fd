"""Writing a run's checkpoints (Orbax manager, keep-N, async) and the one restore policy.

The layout and the items of a checkpoint are `sslm_jax.checkpoints.layout`; parameters from another run are
`sslm_jax.checkpoints.transplant`; SIGTERM is `sslm_jax.training.preemption`. The training loop uses it like this:

    manager = create_manager(workdir, config=config)            # fails early on an unwritable workdir
    state, start_step, how = restore_or_init(
        manager, abstract_state=abstract_state, init_fn=init_fn, init_from=config.init_from,
        config=config, data_iterator=train_iter, vocab_path=vocab_path)  # "resumed" | "init_from" | "fresh"
    with PreemptionHandler() as preemption:
        for step in range(start_step + 1, config.total_steps + 1):
            state, metrics = train_step(state, next(train_iter), rng)
            stop = preemption.should_stop(step)
            save_checkpoint(manager, step, state=state, config=config, vocab_path=vocab_path,
                            data_iterator=train_iter, force=stop or step == config.total_steps)
            if stop:
                break
    manager.wait_until_finished()
    manager.close()
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from sslm_jax.checkpoints import deletion, integrity, layout
from sslm_jax.checkpoints.layout import CONFIG_ITEM, DATA_ITEM, STATE_ITEM, VOCAB_ITEM
from sslm_jax.checkpoints.transplant import load_params, resolve_init_from
from sslm_jax.errors import CheckpointError, ConfigError
from sslm_jax.models import registry
from sslm_jax.training import resume_settings

# --- Saving ------------------------------------------------------------------------------------------------------


def check_workdir(workdir: str | os.PathLike) -> epath.Path:
    """Creates `workdir` if needed and proves it writable, before any work; `CheckpointError` if it is not."""
    path = epath.Path(workdir)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"workdir {path} is a file, not a folder: choose another --workdir")
    exported = [name for name in ("config.json", "manifest.json") if (path / name).is_file()]
    if exported and not (path / layout.CHECKPOINTS_DIR).exists():  # training would hide the model behind a run
        raise CheckpointError(
            f"workdir {path} holds an exported model ({exported[0]}), not a training run: use a new --workdir "
            f"(with --config.init_from={path} to start from that model)"
        )
    probe = path / f".sslm-write-probe-{jax.process_index()}-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CheckpointError(
            f"workdir {path} is not writable ({e.strerror or e}): choose another --workdir or fix its permissions"
        ) from None
    checkpoints = path / layout.CHECKPOINTS_DIR
    if checkpoints.exists() and not checkpoints.is_dir():
        raise CheckpointError(f"{checkpoints} is a file, not a folder of checkpoints: move it or use another workdir")
    return path


def validate_settings(config: ml_collections.ConfigDict) -> None:
    """ConfigError unless the checkpoint interval and the number kept are at least 1."""
    for field in ("checkpoint_every_steps", "keep_checkpoints"):
        if config[field] < 1:
            raise ConfigError(f"config.{field}={config[field]} must be >= 1")


def close_manager(manager: ocp.CheckpointManager) -> None:
    """`manager.close()`, after the clean-up of unfinished saves' temporary folders that the manager started in the
    background when it was created: close() does not wait for it, and a new workdir removed after a failed start
    (loop.py) then made that thread print a traceback at exit, after the one-line error."""
    await_cleanup = getattr(manager, "_maybe_await_cleanup_tmp_directory", None)  # Orbax 0.12's; absent: skip
    if await_cleanup is not None:
        await_cleanup()
    manager.close()


def create_manager(
    workdir: str | os.PathLike, *, config: ml_collections.ConfigDict, async_save: bool = True
) -> ocp.CheckpointManager:
    """An Orbax manager for `<workdir>/checkpoints`: saves every `config.checkpoint_every_steps` steps (and when
    `save_checkpoint(force=True)`), keeps the latest `config.keep_checkpoints`, writes in the background.

    Raises `CheckpointError` when the workdir is unwritable and `ConfigError` for bad intervals, before writing.
    """
    validate_settings(config)
    path = check_workdir(workdir)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints,
        # No "save at the first step" policy (Orbax's default adds one): a checkpoint of an untrained model is
        # worthless. The preemption policy saves at the step all hosts agreed on after a multi-host SIGTERM.
        save_decision_policy=ocp.checkpoint_managers.AnySavePolicy(
            [
                ocp.checkpoint_managers.FixedIntervalPolicy(config.checkpoint_every_steps),
                ocp.checkpoint_managers.PreemptionCheckpointingPolicy(),
            ]
        ),
        enable_async_checkpointing=async_save,
        create=True,
        # A save cut short (the process killed mid-write) leaves "<step>.orbax-checkpoint-tmp"; the restarted
        # run removes it. Only the trainer creates a manager, and it owns its workdir.
        cleanup_tmp_directories=True,
    )
    manager = ocp.CheckpointManager(
        path / layout.CHECKPOINTS_DIR, options=options, handler_registry=layout.handler_registry()
    )
    deletion.make_deletion_atomic(manager)  # keep-N cut short by a kill leaves no half-deleted "committed" step
    return manager


def save_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    *,
    state,
    config: ml_collections.ConfigDict,
    vocab_path: str | os.PathLike | None,
    data_iterator,
    force: bool = False,
) -> bool:
    """Saves `state`, the config, the vocabulary and every host's data position as step `step`, if due.

    Call it on every host after every step: it saves when the step is a multiple of `checkpoint_every_steps`, at a
    multi-host preemption sync point, or when `force` (the last step, a local SIGTERM). A step that already exists
    (the one just resumed from) is not saved again. `vocab_path=None` / `data_iterator=None` leave those items out
    (notebooks and research code); the trainer passes both. Returns whether a save was started; it finishes in the
    background (`manager.wait_until_finished()` before exiting).
    """
    if step in manager.all_steps() or not (force or manager.should_save(step)):
        return False
    items = {
        STATE_ITEM: ocp.args.StandardSave(state),
        CONFIG_ITEM: ocp.args.JsonSave(json.loads(config.to_json_best_effort(sort_keys=True))),
    }
    if vocab_path is not None:
        items[VOCAB_ITEM] = layout.VocabSave(layout.tokenizer_files(vocab_path))
    if data_iterator is not None:
        items[DATA_ITEM] = layout.DataSave(data_iterator)
    items[integrity.MANIFEST_ITEM] = integrity.ManifestSave()  # describes the others, inside the same commit
    saved = manager.save(step, args=ocp.args.Composite(**items), force=True)
    if saved:
        logging.info("Saving checkpoint %s (in the background).", manager.directory / str(step))
    return saved


def set_aside_damaged(workdir: str | os.PathLike) -> list[epath.Path]:
    """Moves each damaged newest step (`integrity.verify`) to `checkpoints/<step>.corrupt-<UTC time>` (never deletes
    it), with one warning line, until the newest step is intact or none is left. Returns the new paths.

    Only the trainer calls it, holding the workdir's lock and before its Orbax manager lists the steps, so the restore
    policy below sees intact steps only. Process 0 moves; the others wait for it. Older intact steps are not read.
    """
    folder = epath.Path(workdir) / layout.CHECKPOINTS_DIR
    moved = []
    if jax.process_index() == 0:
        damaged = []
        for step_dir in integrity.committed_steps(folder):
            problem = integrity.verify(step_dir)
            if problem is None:
                break
            damaged.append((step_dir, problem))
        else:
            if damaged:  # nothing to fall back on: say so, and leave every step where it is
                listed = "; ".join(f"{d.name}: {problem}" for d, problem in damaged)
                raise CheckpointError(
                    f"no intact checkpoint in {folder} ({listed}): restore it from a backup, or move "
                    f"{folder} away to start afresh"
                )
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for step_dir, problem in damaged:
            # No "_<digits>" at the end: Orbax reads "<anything>_<n>" as step n.
            aside = folder / f"{step_dir.name}.corrupt-{stamp}"
            step_dir.rename(aside)
            logging.warning("Checkpoint %s is damaged (%s): moved it to %s.", step_dir, problem, aside)
            moved.append(aside)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("sslm damaged checkpoints set aside")
    return moved


# --- Checks before resuming ------------------------------------------------------------------------------------


def check_latest_is_same_model(manager: ocp.CheckpointManager, config: ml_collections.ConfigDict) -> None:
    """`restore_or_init`'s first check, made early: the trainer calls it before it trains or writes a vocabulary,
    so that a workdir of another task or model is refused before anything in it changes."""
    step = manager.latest_step()
    if step is not None:
        _check_same_model(manager.directory / str(step), config)


def _check_same_model(checkpoint_dir: epath.Path, config: ml_collections.ConfigDict) -> None:
    """CheckpointError if the checkpoint's task or model differs from `config` (vocab_size 0 = not yet known)."""
    saved = layout.load_config(checkpoint_dir)
    family = saved.get("model", {}).get("family")
    pairs = [("task", saved.get("task"), config.task), ("model.family", family, config.model.family)]
    if family == config.model.family:
        fields = registry.get(family).shape_fields
        pairs += [(f"model.{f}", saved.get("model", {}).get(f), config.model[f]) for f in fields]
    for name, there, here in pairs:
        if name == "model.vocab_size" and 0 in (there, here):
            continue
        if there != here:
            raise CheckpointError(
                f"{checkpoint_dir} is a checkpoint with {name}={there!r}, but this run has {name}={here!r}: use "
                f"another workdir, or set {name}={there!r} to resume it"
            )


def _check_same_vocab(vocab_path, saved_dir: epath.Path, source: epath.Path) -> None:
    """CheckpointError if the run's tokenizer files (`vocab_path`: a file, or a tokenizer's `files` mapping) list
    other tokens than the ones `source` was trained with (the same-named files in `saved_dir`)."""
    if vocab_path is None:
        return
    for name, path in layout.tokenizer_files(vocab_path).items():
        saved = saved_dir / name
        if saved.exists() and epath.Path(path).read_text().splitlines() != saved.read_text().splitlines():
            shown = path if isinstance(vocab_path, Mapping) else vocab_path
            raise CheckpointError(
                f"vocabulary {shown} is not {saved}, the one {source} was trained with: set "
                f"data.vocab_path={saved} (or use another workdir)"
            )


def _check_fits(checkpoint_dir: epath.Path, abstract_state) -> None:
    """CheckpointError naming the first leaf whose path or shape differs between the checkpoint and the run."""
    saved = ocp.tree.to_flat_dict(ocp.PyTreeCheckpointHandler().metadata(checkpoint_dir / STATE_ITEM).tree)
    wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(abstract_state, keep_empty_nodes=True))
    for key in sorted(set(saved) | set(wanted)):
        there = tuple(saved[key].shape) if key in saved else "absent"
        here = tuple(wanted[key].shape) if key in wanted else "absent"
        if there != here:
            raise CheckpointError(
                f"{checkpoint_dir} does not fit this run's train state: {'/'.join(key)} is {there} there and {here} "
                f"here (another model or optimizer): use another workdir, or init_from={checkpoint_dir} for its "
                f"parameters only"
            )


def _check_data_position(checkpoint_dir: epath.Path) -> None:
    """CheckpointError unless the checkpoint holds this host's data position, saved by as many hosts as now run."""
    data = checkpoint_dir / DATA_ITEM
    if not data.is_dir():
        raise CheckpointError(
            f"{checkpoint_dir} was saved without the data position: resume it without a data iterator "
            f"(data_iterator=None), or use init_from={checkpoint_dir} in a new workdir"
        )
    folder = layout.data_folder(jax.process_index(), jax.process_count())
    if not (data / folder).is_dir():
        saved = sorted(p.name for p in data.iterdir() if p.name.startswith("process_"))
        raise CheckpointError(
            f"{data} holds the data positions {saved}, not {folder}: resume with the same number of processes, "
            f"or use init_from={checkpoint_dir} in a new workdir"
        )


# --- The restore policy ---------------------------------------------------------------------------------------


def restore_or_init(
    manager: ocp.CheckpointManager,
    *,
    abstract_state,
    init_fn: Callable[[], Any],
    init_from: str,
    config: ml_collections.ConfigDict,
    data_iterator,
    vocab_path: str | os.PathLike | None = None,
) -> tuple[Any, int, str]:
    """The one restore policy: resume the workdir's latest checkpoint, else start from `init_from`, else fresh.

    Args:
      manager: from `create_manager(workdir, ...)`.
      abstract_state: the TrainState as `jax.ShapeDtypeStruct`s carrying the target shardings; a checkpoint is
        restored straight into them, so it resumes on another mesh or device count.
      init_fn: `() -> TrainState`, the sharded fresh initialisation (called unless resuming).
      init_from: "" or a path for a params-only start (see `load_params`); ignored (and logged) when resuming, so a
        preempted fine-tuning run continues from its own checkpoint.
      config: this run's config (with `model.vocab_size` resolved); compared with the checkpoint's before restoring.
      data_iterator: restored to its saved position when resuming; None leaves the data position out.
      vocab_path: this run's vocabulary file (or its tokenizer's `files` mapping), compared with the one saved with the checkpoint (or the Hugging Face
        directory's vocab.txt): a different token list would silently scramble the embeddings. None skips the check.

    Returns:
      (state, start_step, how): `start_step` is the step of the restored checkpoint (0 otherwise); `how` is
      "resumed", "init_from" or "fresh".

    Raises CheckpointError, before anything is changed on disk, when the workdir's checkpoint belongs to another
    model or vocabulary, was saved with settings that cannot change on resume (`resume_settings`), was saved
    without a data position or by another number of hosts, or `init_from` points at
    nothing usable.
    """
    step = manager.latest_step()
    if step is not None:
        checkpoint_dir = manager.directory / str(step)
        _check_same_model(checkpoint_dir, config)
        resume_settings.reconcile(layout.load_config(checkpoint_dir), config, checkpoint_dir)
        _check_same_vocab(vocab_path, checkpoint_dir / VOCAB_ITEM, checkpoint_dir)
        _check_fits(checkpoint_dir, abstract_state)
        items = {STATE_ITEM: ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            _check_data_position(checkpoint_dir)
            items[DATA_ITEM] = layout.DataRestore(data_iterator)
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        if init_from:
            logging.info("Resuming %s; init_from=%s is not used.", checkpoint_dir, init_from)
        logging.info("Resumed from %s.", checkpoint_dir)
        return restored[STATE_ITEM], step, "resumed"
    if init_from:
        # Fail on a bad path or vocabulary before the (possibly long) initialisation.
        kind, source = resolve_init_from(init_from)
        _check_same_vocab(vocab_path, source / VOCAB_ITEM if kind == "sslm" else source, source)
        state = init_fn()
        loaded = load_params(init_from, params=state.params)
        return state.replace(params=loaded.params), 0, "init_from"
    logging.info("No checkpoint in %s: starting from a fresh initialisation.", manager.directory)
    return init_fn(), 0, "fresh"
