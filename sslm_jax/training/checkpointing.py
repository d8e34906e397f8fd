"""Checkpoints of a run: Orbax saves, the one restore policy, and preemption (SIGTERM) handling.

Every checkpoint is one Orbax step directory under `<workdir>/checkpoints`, self-contained for resuming, fill-mask
and export:

    <workdir>/checkpoints/1000/
      state/               the TrainState (step, params, opt_state), sharded Orbax arrays
      config/config.json   the run's ConfigDict as JSON
      vocab/vocab.txt      the WordPiece vocabulary the model was trained with
      data/process_0-of-2/ each host's input-pipeline position (`iterator.save(directory)`), one folder per host
      data/process_1-of-2/

All four are items of ONE Orbax save, so they are written into the same temporary directory and renamed together:
a step appears (and becomes "latest") only once every item of every host is complete, and keep-N prunes them
together. The training loop uses it like this:

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

import dataclasses
import json
import os
import signal
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import traverse_util
from jax.experimental import multihost_utils

from sslm_jax.errors import CheckpointError, ConfigError

CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM, CONFIG_ITEM, VOCAB_ITEM, DATA_ITEM = "state", "config", "vocab", "data"
CONFIG_FILE, VOCAB_FILE = "config.json", "vocab.txt"

# Settings that decide the shapes or the meaning of the saved parameters: a checkpoint saved with other values
# belongs to another model. Dropout, dtypes, remat and the attention kernel may change between runs.
MODEL_FIELDS = ("size", "vocab_size", "max_position_embeddings", "type_vocab_size", "hidden_act")


# --- Orbax items of our own: the vocabulary file and each host's data-iterator position -----------------------


@dataclasses.dataclass
class VocabSave(ocp.args.CheckpointArgs):
    path: str


@dataclasses.dataclass
class DataSave(ocp.args.CheckpointArgs):
    iterator: Any  # has save(directory) / restore(directory)


@dataclasses.dataclass
class DataRestore(ocp.args.CheckpointArgs):
    iterator: Any


class VocabHandler(ocp.CheckpointHandler):
    """Copies the vocabulary file into the step (one host writes it; every host reads it back as a path)."""

    def save(self, directory: epath.Path, args: VocabSave):
        if jax.process_index() == 0:
            (directory / VOCAB_FILE).write_bytes(epath.Path(args.path).read_bytes())

    def restore(self, directory: epath.Path, args=None) -> epath.Path:
        return directory / VOCAB_FILE


def _data_folder(index: int, count: int) -> str:
    return f"process_{index}-of-{count}"


class DataIteratorHandler(ocp.CheckpointHandler):
    """Each host saves its own iterator position into `data/process_<i>-of-<n>` of the same step.

    Orbax calls `save` during the blocking part of `CheckpointManager.save`, so the position is that of the batch
    the saved state has just consumed, even though the arrays are written in the background.
    """

    def save(self, directory: epath.Path, args: DataSave):
        folder = directory / _data_folder(jax.process_index(), jax.process_count())
        folder.mkdir(parents=True, exist_ok=True)
        args.iterator.save(os.fspath(folder))

    def restore(self, directory: epath.Path, args: DataRestore):
        args.iterator.restore(os.fspath(directory / _data_folder(jax.process_index(), jax.process_count())))
        return args.iterator


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add(STATE_ITEM, ocp.args.StandardSave)
    registry.add(STATE_ITEM, ocp.args.StandardRestore)
    config_handler = ocp.JsonCheckpointHandler(CONFIG_FILE)
    registry.add(CONFIG_ITEM, ocp.args.JsonSave, config_handler)
    registry.add(CONFIG_ITEM, ocp.args.JsonRestore, config_handler)
    registry.add(VOCAB_ITEM, VocabSave, VocabHandler())
    data_handler = DataIteratorHandler()
    registry.add(DATA_ITEM, DataSave, data_handler)
    registry.add(DATA_ITEM, DataRestore, data_handler)
    return registry


# --- Saving ------------------------------------------------------------------------------------------------------


def check_workdir(workdir: str | os.PathLike) -> epath.Path:
    """Creates `workdir` if needed and proves it writable, before any work; `CheckpointError` if it is not."""
    path = epath.Path(workdir)
    probe = path / f".sslm-write-probe-{jax.process_index()}-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CheckpointError(
            f"workdir {path} is not writable ({e.strerror or e}): choose another --workdir or fix its permissions"
        ) from None
    checkpoints = path / CHECKPOINTS_DIR
    if checkpoints.exists() and not checkpoints.is_dir():
        raise CheckpointError(f"{checkpoints} is a file, not a folder of checkpoints: move it or use another workdir")
    return path


def create_manager(
    workdir: str | os.PathLike, *, config: ml_collections.ConfigDict, async_save: bool = True
) -> ocp.CheckpointManager:
    """An Orbax manager for `<workdir>/checkpoints`: saves every `config.checkpoint_every_steps` steps (and when
    `save_checkpoint(force=True)`), keeps the latest `config.keep_checkpoints`, writes in the background.

    Raises `CheckpointError` when the workdir is unwritable and `ConfigError` for bad intervals, before writing.
    """
    for field in ("checkpoint_every_steps", "keep_checkpoints"):
        if config[field] < 1:
            raise ConfigError(f"config.{field}={config[field]} must be >= 1")
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
    return ocp.CheckpointManager(path / CHECKPOINTS_DIR, options=options, handler_registry=_handler_registry())


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
        items[VOCAB_ITEM] = VocabSave(os.fspath(vocab_path))
    if data_iterator is not None:
        items[DATA_ITEM] = DataSave(data_iterator)
    saved = manager.save(step, args=ocp.args.Composite(**items), force=True)
    if saved:
        logging.info("Saving checkpoint %s (in the background).", manager.directory / str(step))
    return saved


# --- Finding and reading checkpoints ------------------------------------------------------------------------------


def latest_checkpoint(path: str | os.PathLike) -> epath.Path | None:
    """The newest complete step directory in an sslm workdir, its `checkpoints/` folder, or `path` itself when it is
    a step directory; None when there is none.

        latest_checkpoint("runs/bert_tiny")               # -> runs/bert_tiny/checkpoints/1000
        latest_checkpoint("runs/bert_tiny/checkpoints/500")  # -> runs/bert_tiny/checkpoints/500
    """
    path = epath.Path(path)
    if (path / STATE_ITEM).is_dir() and ocp.utils.is_checkpoint_finalized(path):
        return path
    folder = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    if not folder.is_dir():
        return None
    steps = ocp.utils.checkpoint_steps(folder)
    return folder / str(max(steps)) if steps else None


def load_config(checkpoint_dir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The ConfigDict a checkpoint was saved with."""
    file = epath.Path(checkpoint_dir) / CONFIG_ITEM / CONFIG_FILE
    if not file.exists():
        raise CheckpointError(f"{file} is missing: {checkpoint_dir} was not saved by sslm_jax's save_checkpoint")
    return ml_collections.ConfigDict(json.loads(file.read_text()))


def vocab_file(checkpoint_dir: str | os.PathLike) -> epath.Path:
    """The vocabulary file saved with a checkpoint."""
    file = epath.Path(checkpoint_dir) / VOCAB_ITEM / VOCAB_FILE
    if not file.exists():
        raise CheckpointError(f"{file} is missing: {checkpoint_dir} was saved without its vocabulary")
    return file


def _check_same_model(checkpoint_dir: epath.Path, config: ml_collections.ConfigDict) -> None:
    """CheckpointError if the checkpoint's task or model differs from `config` (vocab_size 0 = not yet known)."""
    saved = load_config(checkpoint_dir)
    pairs = [("task", saved.get("task"), config.task)]
    pairs += [(f"model.{f}", saved.get("model", {}).get(f), config.model[f]) for f in MODEL_FIELDS]
    for name, there, here in pairs:
        if name == "model.vocab_size" and 0 in (there, here):
            continue
        if there != here:
            raise CheckpointError(
                f"{checkpoint_dir} is a checkpoint with {name}={there!r}, but this run has {name}={here!r}: use "
                f"another workdir, or set {name}={there!r} to resume it"
            )


def _check_same_vocab(vocab_path, saved_vocab: epath.Path, source: epath.Path) -> None:
    """CheckpointError if the run's vocabulary lists other tokens than the one `source` was trained with."""
    if vocab_path is None or not saved_vocab.exists():
        return
    if epath.Path(vocab_path).read_text().splitlines() != saved_vocab.read_text().splitlines():
        raise CheckpointError(
            f"vocabulary {vocab_path} is not {saved_vocab}, the one {source} was trained with: set "
            f"data.vocab_path={saved_vocab} (or use another workdir)"
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
    folder = _data_folder(jax.process_index(), jax.process_count())
    if not (data / folder).is_dir():
        saved = sorted(p.name for p in data.iterdir() if p.name.startswith("process_"))
        raise CheckpointError(
            f"{data} holds the data positions {saved}, not {folder}: resume with the same number of processes, "
            f"or use init_from={checkpoint_dir} in a new workdir"
        )


# --- Parameters from another run (fine-tuning) --------------------------------------------------------------------


class LoadedParams(NamedTuple):
    params: Any  # the model's parameter tree, sharded like the fresh one it was given
    fresh: list[str]  # paths kept from the fresh initialisation (absent in the source, e.g. a new head)
    unused: list[str]  # source paths the model has no place for (e.g. a pretraining head when fine-tuning)


def _path_name(key: tuple) -> str:
    return "/".join(str(k) for k in key)


def _resolve_init_from(init_from: str) -> tuple[str, epath.Path]:
    path = epath.Path(init_from)
    if not path.exists():
        raise CheckpointError(
            f"init_from={init_from} does not exist: give an sslm workdir or checkpoint directory, or a Hugging Face "
            f"BERT directory (config.json + model.safetensors)"
        )
    step_dir = latest_checkpoint(path)
    if step_dir is not None:
        return "sslm", step_dir
    if (path / "config.json").exists():
        return "huggingface", path
    raise CheckpointError(
        f"init_from={init_from} holds neither a complete sslm checkpoint nor a Hugging Face config.json: point it at "
        f"a workdir with checkpoints/, one checkpoints/<step> folder, or a Hugging Face BERT directory"
    )


def init_from_settings(init_from: str | os.PathLike) -> dict[str, Any]:
    """The settings a run started from `init_from` must share with it, as dotted config keys: the model's shape
    (`model.` + each of MODEL_FIELDS) and, when the source records it, the tokenizer's `data.lower_case`.

    Read from an sslm checkpoint's saved config, or from a Hugging Face directory's config.json (whose layer count
    and widths must be one of `sslm_jax.models.bert.SIZES`) and tokenizer_config.json (`do_lower_case`).

        init_from_settings("runs/bert_tiny")   # {"model.size": "tiny", "model.vocab_size": 8192,
                                               #  "model.max_position_embeddings": 512, ..., "data.lower_case": True}
    """
    kind, source = _resolve_init_from(os.fspath(init_from))
    if kind == "sslm":
        saved = load_config(source)
        model = saved.get("model", {})
        missing = [f for f in MODEL_FIELDS if f not in model]
        if missing:
            file = source / CONFIG_ITEM / CONFIG_FILE
            raise CheckpointError(f"{file} lacks model.{missing[0]}: it is not the config of an sslm run")
        settings = {f"model.{f}": model[f] for f in MODEL_FIELDS}
        if "lower_case" in saved.get("data", {}):
            settings["data.lower_case"] = bool(saved.data.lower_case)
        return settings
    return _huggingface_settings(source)


def _huggingface_settings(directory: epath.Path) -> dict[str, Any]:
    from sslm_jax.models import bert

    file = directory / "config.json"
    try:
        d = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: cannot be read as JSON ({e})") from None
    model_type = d.get("model_type") if isinstance(d, dict) else None
    if model_type != "bert":
        raise CheckpointError(f"{file}: model_type={model_type!r}; only BERT checkpoints can start an sslm_jax run")
    try:
        hf = bert.BertConfig.from_hf_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {e}") from None
    shape = {k: getattr(hf, k) for k in bert.SIZES["base"]}
    size = next((name for name, dims in bert.SIZES.items() if dims == shape), None)
    if size is None:
        raise CheckpointError(
            f"{file}: a BERT with {shape} is none of sslm_jax's model sizes ({', '.join(bert.SIZES)}), so it cannot "
            "start a run"
        )
    if hf.layer_norm_eps != bert.BertConfig.layer_norm_eps:
        raise CheckpointError(
            f"{file}: layer_norm_eps={hf.layer_norm_eps}; sslm_jax's BERT sizes use {bert.BertConfig.layer_norm_eps}"
        )
    settings = {f"model.{f}": size if f == "size" else getattr(hf, f) for f in MODEL_FIELDS}
    tokenizer_file = directory / "tokenizer_config.json"
    if tokenizer_file.exists():
        try:
            tokenizer_config = json.loads(tokenizer_file.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{tokenizer_file}: cannot be read as JSON ({e})") from None
        if isinstance(tokenizer_config, dict) and "do_lower_case" in tokenizer_config:
            settings["data.lower_case"] = bool(tokenizer_config["do_lower_case"])
    return settings


def load_params(init_from: str | os.PathLike, *, params) -> LoadedParams:
    """Parameters of `init_from` copied into `params` (the fresh, sharded parameters of the model to train).

    The rule: every leaf whose path exists in both is copied (into the fresh leaf's sharding and dtype); a path in
    both with another shape is an error (another model size or vocabulary); paths only in the model keep their fresh
    values and paths only in the source are dropped, both listed in the result and the log. So a pretraining
    checkpoint ({bert, predictions, seq_relationship}) starts a classifier ({bert, classifier}) with the whole
    `bert` encoder and pooler copied and a fresh `classifier`. A bare encoder's tree (BertModel: {embeddings,
    encoder, pooler}) is matched as the `bert` subtree of the others, on either side; reported paths use that naming.

    `init_from`: an sslm workdir, its `checkpoints/` folder or one `checkpoints/<step>` (the state's params are
    read, sharded straight onto the target's devices), or a Hugging Face BERT directory (read through
    `sslm_jax.interop.huggingface.load_checkpoint`).
    """
    kind, source = _resolve_init_from(os.fspath(init_from))
    target = traverse_util.flatten_dict(_with_bert_level(params))
    shapes, load = (_sslm_source if kind == "sslm" else _huggingface_source)(source)
    common = [k for k in target if k in shapes]
    for key in common:
        if shapes[key] != tuple(target[key].shape) and key[0] == "classifier":
            raise CheckpointError(
                f"init_from={source} has a classifier head for {shapes[key][-1]} labels, this task has "
                f"{target[key].shape[-1]} (data.num_labels / its label names): start from a checkpoint without a "
                f"classifier (e.g. the pretraining run) or fine-tune on data with the same labels"
            )
        if shapes[key] != tuple(target[key].shape):
            raise CheckpointError(
                f"init_from={source}: {_path_name(key)} has shape {shapes[key]} there but {tuple(target[key].shape)} "
                f"in this model: use the same model size and vocabulary (config.model) as the checkpoint"
            )
    if not common:
        raise CheckpointError(f"init_from={source}: none of its parameters has a place in this model (another model?)")
    loaded = load({k: target[k] for k in common})
    result = LoadedParams(
        params=_without_bert_level(traverse_util.unflatten_dict({**target, **loaded}), like=params),
        fresh=[_path_name(k) for k in target if k not in shapes],
        unused=[_path_name(k) for k in shapes if k not in target],
    )
    logging.info(
        "Parameters from %s: %d copied; initialised fresh: %s; not used: %s",
        source, len(common), result.fresh or "none", result.unused or "none",
    )  # fmt: skip
    return result


# A source of parameters: ({path: shape}, load) where load({path: fresh leaf}) -> {path: leaf like the fresh one}.
# Paths are flattened keys with a bare encoder's tree put under "bert" (see `_with_bert_level`).


def _sslm_source(step_dir: epath.Path):
    tree = ocp.PyTreeCheckpointHandler().metadata(step_dir / STATE_ITEM).tree
    if "params" not in tree:
        raise CheckpointError(f"{step_dir / STATE_ITEM} holds no params: it is not an sslm train state")
    shapes = {k: tuple(m.shape) for k, m in traverse_util.flatten_dict(_with_bert_level(tree["params"])).items()}

    def load(like: dict) -> dict:
        # Only the wanted leaves are read, each straight into the fresh leaf's sharding (and dtype).
        wanted = {k: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for k, x in like.items()}
        wanted = {"params": _without_bert_level(traverse_util.unflatten_dict(wanted), like=tree["params"])}
        restored = ocp.PyTreeCheckpointHandler().restore(
            step_dir / STATE_ITEM,
            args=ocp.args.PyTreeRestore(
                item=wanted, restore_args=ocp.checkpoint_utils.construct_restore_args(wanted), partial_restore=True
            ),
        )
        return traverse_util.flatten_dict(_with_bert_level(restored["params"]))

    return shapes, load


def _huggingface_source(directory: epath.Path):
    import importlib

    # Imported here: the interop module reads safetensors/PyTorch files, which resuming never needs.
    huggingface = importlib.import_module("sslm_jax.interop.huggingface")
    _, hf_params = huggingface.load_checkpoint(os.fspath(directory))
    flat = traverse_util.flatten_dict(_with_bert_level(hf_params))

    def load(like: dict) -> dict:
        return {k: _to_global_array(flat[k], like=x) for k, x in like.items()}

    return {k: tuple(np.shape(v)) for k, v in flat.items()}, load


def _with_bert_level(params):
    """A bare encoder's tree ({embeddings, encoder, pooler}) put under "bert", where every model with a head has it,
    so that the paths of any two BERT models compare: {"embeddings": ...} -> {"bert": {"embeddings": ...}}."""
    return {"bert": params} if "embeddings" in params and "encoder" in params else params


def _without_bert_level(params, *, like):
    """Undoes `_with_bert_level` when `like` is a bare encoder's tree."""
    return params.get("bert", {}) if "embeddings" in like and "encoder" in like else params


def _to_global_array(value, *, like: jax.Array) -> jax.Array:
    """A host numpy array (the same on every host) as a jax.Array with `like`'s sharding and dtype."""
    value = np.asarray(value, dtype=like.dtype)
    return jax.make_array_from_callback(value.shape, like.sharding, lambda index: value[index])


# --- The restore policy ---------------------------------------------------------------------------------------------


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
      vocab_path: this run's vocabulary file, compared with the one saved with the checkpoint (or the Hugging Face
        directory's vocab.txt): a different token list would silently scramble the embeddings. None skips the check.

    Returns:
      (state, start_step, how): `start_step` is the step of the restored checkpoint (0 otherwise); `how` is
      "resumed", "init_from" or "fresh".

    Raises CheckpointError, before anything is changed on disk, when the workdir's checkpoint belongs to another
    model or vocabulary, was saved without a data position or by another number of hosts, or `init_from` points at
    nothing usable.
    """
    step = manager.latest_step()
    if step is not None:
        checkpoint_dir = manager.directory / str(step)
        _check_same_model(checkpoint_dir, config)
        _check_same_vocab(vocab_path, checkpoint_dir / VOCAB_ITEM / VOCAB_FILE, checkpoint_dir)
        _check_fits(checkpoint_dir, abstract_state)
        items = {STATE_ITEM: ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            _check_data_position(checkpoint_dir)
            items[DATA_ITEM] = DataRestore(data_iterator)
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        if init_from:
            logging.info("Resuming %s; init_from=%s is not used.", checkpoint_dir, init_from)
        logging.info("Resumed from %s.", checkpoint_dir)
        return restored[STATE_ITEM], step, "resumed"
    if init_from:
        # Fail on a bad path or vocabulary before the (possibly long) initialisation.
        kind, source = _resolve_init_from(init_from)
        source_vocab = source / VOCAB_ITEM / VOCAB_FILE if kind == "sslm" else source / VOCAB_FILE
        _check_same_vocab(vocab_path, source_vocab, source)
        state = init_fn()
        loaded = load_params(init_from, params=state.params)
        return state.replace(params=loaded.params), 0, "init_from"
    logging.info("No checkpoint in %s: starting from a fresh initialisation.", manager.directory)
    return init_fn(), 0, "fresh"


# --- Preemption -----------------------------------------------------------------------------------------------------


def _jax_preemption_service_active() -> bool:
    """Whether jax's coordination service watches for SIGTERM and agrees a save step across hosts.

    `jax.distributed.initialize` starts it on multi-host runs unless `jax_enable_preemption_service` is off; it
    catches SIGTERM in C++, which a Python signal handler would replace.
    """
    return jax.process_count() > 1 and bool(jax.config.jax_enable_preemption_service)


class PreemptionHandler:
    """Turns SIGTERM (a preemption notice) into a flag the training loop polls once per step.

        with PreemptionHandler() as preemption:
            for step in ...:
                ...
                if preemption.should_stop(step):   # every host gets the same answer for the same step
                    save_checkpoint(..., force=True)
                    break                           # and exit 0; the run resumes from this step

    One host: a Python handler records the signal. Several hosts: jax's preemption service (started by
    `jax.distributed.initialize`) is used when on, since hosts receive SIGTERM at different steps and must agree on
    one; with it off, the recorded flags are combined across hosts at every `should_stop`. Install from the main
    thread; the previous handlers come back on exit.
    """

    def __init__(self, *, signals: tuple[int, ...] = (signal.SIGTERM,)):
        self._signals = tuple(signals)
        self._previous: dict[int, Any] = {}
        self.received: int | None = None  # the signal number, once one arrived

    def install(self) -> "PreemptionHandler":
        if _jax_preemption_service_active():
            logging.info("Preemption: using jax's multi-host preemption service.")
            return self
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._record)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def __enter__(self) -> "PreemptionHandler":
        return self.install()

    def __exit__(self, *exc_info) -> None:
        self.uninstall()

    def _record(self, signum, frame) -> None:
        del frame
        # Only set a flag: a signal handler interrupts arbitrary code, so it must not log, save or raise.
        self.received = signum

    @property
    def requested(self) -> bool:
        """True once this process received one of the signals."""
        return self.received is not None

    def should_stop(self, step: int) -> bool:
        """Whether to save at `step` and stop. Call it at every step on every host."""
        if _jax_preemption_service_active():
            return multihost_utils.reached_preemption_sync_point(step)
        if jax.process_count() == 1:
            return self.requested
        flags = multihost_utils.process_allgather(np.int32(self.requested))
        return bool(np.any(flags))
