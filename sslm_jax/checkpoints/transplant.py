"""Parameters from another run (`init_from`): a weight transplant by path and shape, for any registered model.

    settings = init_from_settings("runs/bert_tiny")    # the model shape a new run must adopt ({"model.size": ...})
    loaded = load_params("runs/bert_tiny", params=fresh_params)
    loaded.params, loaded.fresh, loaded.unused         # copied tree; paths kept fresh; source paths not used

The source is an sslm workdir or checkpoint (only the wanted arrays are read, straight into the target's shardings)
or a Hugging Face directory of a registered family (read through `sslm_jax.interop`).
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import traverse_util

from sslm_jax import interop
from sslm_jax.checkpoints import layout
from sslm_jax.errors import CheckpointError
from sslm_jax.models import registry


class LoadedParams(NamedTuple):
    params: Any  # the model's parameter tree, sharded like the fresh one it was given
    fresh: list[str]  # paths kept from the fresh initialisation (absent in the source, e.g. a new head)
    unused: list[str]  # source paths the model has no place for (e.g. a pretraining head when fine-tuning)


def _path_name(key: tuple) -> str:
    return "/".join(str(k) for k in key)


def resolve_init_from(init_from: str) -> tuple[str, epath.Path]:
    path = epath.Path(init_from)
    if not path.exists():
        raise CheckpointError(
            f"init_from={init_from} does not exist: give an sslm workdir or checkpoint directory, or a Hugging Face "
            f"BERT directory (config.json + model.safetensors)"
        )
    step_dir = layout.latest_checkpoint(path)
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
    (each of its family's `shape_fields`, see `init_from_family`) and, when the source records it, the tokenizer's
    `data.lower_case`.

    Read from an sslm checkpoint's saved config, or from a Hugging Face directory's config.json (its `model_type`
    names the family, whose sizes it must match) and tokenizer_config.json (`do_lower_case`).

        init_from_settings("runs/bert_tiny")   # {"model.size": "tiny", "model.vocab_size": 8192,
                                               #  "model.max_position_embeddings": 512, ..., "data.lower_case": True}
    """
    kind, source = resolve_init_from(os.fspath(init_from))
    if kind == "sslm":
        saved = layout.load_config(source)
        model = saved.get("model", {})
        family = registry.get(saved.model.family)
        missing = [f for f in family.shape_fields if f not in model]
        if missing:
            file = source / layout.CONFIG_ITEM / layout.CONFIG_FILE
            raise CheckpointError(f"{file} lacks model.{missing[0]}: it is not the config of an sslm run")
        settings = {f"model.{f}": model[f] for f in family.shape_fields}
        if "lower_case" in saved.get("data", {}):
            settings["data.lower_case"] = bool(saved.data.lower_case)
        return settings
    return _huggingface_settings(source)


def _huggingface_settings(directory: epath.Path) -> dict[str, Any]:
    file = directory / "config.json"
    d = _read_json(file)
    family = _huggingface_family(file, d)
    try:
        model_settings = family.settings_from_hf(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {e}, so it cannot start a run") from None
    settings = {f"model.{k}": v for k, v in model_settings.items()}
    tokenizer_file = directory / "tokenizer_config.json"
    if tokenizer_file.exists():
        tokenizer_config = _read_json(tokenizer_file)
        if "do_lower_case" in tokenizer_config:
            settings["data.lower_case"] = bool(tokenizer_config["do_lower_case"])
    return settings


def _huggingface_family(file: epath.Path, d: dict) -> registry.ModelFamily:
    model_type = d.get("model_type")
    family = registry.by_hf_model_type(model_type) if isinstance(model_type, str) else None
    if family is None:
        known = ", ".join(registry.get(name).hf_model_type for name in registry.BUILTIN)
        raise CheckpointError(f"{file}: model_type={model_type!r}; an sslm_jax run can start from: {known}")
    return family


def _read_json(file: epath.Path) -> dict:
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: cannot be read as JSON ({e})") from None
    return value if isinstance(value, dict) else {}


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
    kind, source = resolve_init_from(os.fspath(init_from))
    family = _source_family(kind, source)
    target = traverse_util.flatten_dict(_with_backbone_level(params, family))
    shapes, load = (_sslm_source if kind == "sslm" else _huggingface_source)(source, family)
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
        params=_without_backbone_level(traverse_util.unflatten_dict({**target, **loaded}), like=params, family=family),
        fresh=[_path_name(k) for k in target if k not in shapes],
        unused=[_path_name(k) for k in shapes if k not in target],
    )
    logging.info(
        "Parameters from %s: %d copied; initialised fresh: %s; not used: %s",
        source, len(common), result.fresh or "none", result.unused or "none",
    )  # fmt: skip
    return result


# A source of parameters: ({path: shape}, load) where load({path: fresh leaf}) -> {path: leaf like the fresh one}.
# Paths are flattened keys with a bare backbone's tree put under the family's backbone name (`_with_backbone_level`).


def _source_family(kind: str, source: epath.Path) -> registry.ModelFamily:
    if kind == "sslm":
        return registry.get(layout.load_config(source).model.family)
    return _huggingface_family(source / "config.json", _read_json(source / "config.json"))


def init_from_family(init_from: str | os.PathLike) -> registry.ModelFamily:
    """The model family of an `init_from` source (its saved config, or its config.json's model_type)."""
    return _source_family(*resolve_init_from(os.fspath(init_from)))


def _sslm_source(step_dir: epath.Path, family: registry.ModelFamily):
    tree = ocp.PyTreeCheckpointHandler().metadata(step_dir / layout.STATE_ITEM).tree
    if "params" not in tree:
        raise CheckpointError(f"{step_dir / layout.STATE_ITEM} holds no params: it is not an sslm train state")
    shapes = {k: tuple(m.shape) for k, m in traverse_util.flatten_dict(_with_backbone_level(tree["params"], family)).items()}

    def load(like: dict) -> dict:
        # Only the wanted leaves are read, each straight into the fresh leaf's sharding (and dtype).
        wanted = {k: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for k, x in like.items()}
        wanted = {"params": _without_backbone_level(traverse_util.unflatten_dict(wanted), like=tree["params"], family=family)}
        restored = ocp.PyTreeCheckpointHandler().restore(
            step_dir / layout.STATE_ITEM,
            args=ocp.args.PyTreeRestore(
                item=wanted, restore_args=ocp.checkpoint_utils.construct_restore_args(wanted), partial_restore=True
            ),
        )
        return traverse_util.flatten_dict(_with_backbone_level(restored["params"], family))

    return shapes, load


def _huggingface_source(directory: epath.Path, family: registry.ModelFamily):
    # Imported here: the interop module reads safetensors/PyTorch files, which resuming never needs.
    converter = importlib.import_module(interop.HF_MODULES[family.hf_model_type])
    _, hf_params = converter.load_checkpoint(os.fspath(directory))
    flat = traverse_util.flatten_dict(_with_backbone_level(hf_params, family))

    def load(like: dict) -> dict:
        return {k: _to_global_array(flat[k], like=x) for k, x in like.items()}

    return {k: tuple(np.shape(v)) for k, v in flat.items()}, load


def _with_backbone_level(params, family: registry.ModelFamily):
    """A bare backbone's tree put under the family's backbone name, where every model with a head has it, so that
    the paths of any two heads compare: BERT's {"embeddings": ...} -> {"bert": {"embeddings": ...}}."""
    return {family.backbone: params} if family.is_backbone(params) else params


def _without_backbone_level(params, *, like, family: registry.ModelFamily):
    """Undoes `_with_backbone_level` when `like` is a bare backbone's tree."""
    return params.get(family.backbone, {}) if family.is_backbone(like) else params


def _to_global_array(value, *, like: jax.Array) -> jax.Array:
    """A host numpy array (the same on every host) as a jax.Array with `like`'s sharding and dtype."""
    value = np.asarray(value, dtype=like.dtype)
    return jax.make_array_from_callback(value.shape, like.sharding, lambda index: value[index])
