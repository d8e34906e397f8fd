"""Checkpointing: Orbax saves with config/vocab/data position, the restore policy, preemption, errors.

A tiny BERT + adamw TrainState on the 8 fake CPU devices stands in for the trainer's state; a counting iterator with
save/restore stands in for the input pipeline.
"""

import functools
import hashlib
import json
import os
import pathlib
import signal
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from configs import base
from sslm_jax.errors import CheckpointError, ConfigError
from sslm_jax.models.bert import BertConfig, BertForPreTraining, BertForSequenceClassification, init_params
from sslm_jax.checkpoints import layout, transplant
from sslm_jax.training import checkpointing as ckpt
from sslm_jax.training.preemption import PreemptionHandler
from sslm_jax.training.state import TrainState

VOCAB = 128

# A save that fails on purpose leaves Orbax's un-awaited JSON coroutine behind; Python warns when it is collected.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")


class CountingIterator:
    """Yields batches numbered 1, 2, ...; saves/restores its position like the pipeline's iterator."""

    def __init__(self, fail_on_save: bool = False):
        self.position = 0
        self.fail_on_save = fail_on_save

    def __next__(self):
        self.position += 1
        return {"input_ids": np.full((2, 8), self.position, np.int32)}

    def save(self, directory):
        if self.fail_on_save:
            raise OSError("disk full")
        pathlib.Path(directory, "position.json").write_text(json.dumps(self.position))

    def restore(self, directory):
        self.position = json.loads(pathlib.Path(directory, "position.json").read_text())


def make_config(**overrides):
    c = base.get_config()
    c.model.vocab_size = VOCAB
    c.checkpoint_every_steps = 2
    c.keep_checkpoints = 2
    for key, value in overrides.items():
        target, name = (c.model, key[len("model_") :]) if key.startswith("model_") else (c, key)
        target[name] = value
    return c


def make_mesh(shape):
    return Mesh(np.array(jax.devices()).reshape(shape), ("data", "fsdp"))


def fsdp_spec(mesh, shape):
    """Shards the first dimension divisible by the fsdp axis over it (FSDP-like); the rest is replicated."""
    n = mesh.shape["fsdp"]
    for i, d in enumerate(shape):
        if n > 1 and d % n == 0:
            return PartitionSpec(*([None] * i + ["fsdp"]))
    return PartitionSpec()


def make_state(kind: str, size: str, vocab: int, seed: int, optimizer: str) -> TrainState:
    bert = BertConfig.from_size(size, vocab_size=vocab)
    model = BertForPreTraining(bert) if kind == "pretraining" else BertForSequenceClassification(bert, num_labels=3)
    tx = optax.adamw(1e-3) if optimizer == "adamw" else optax.sgd(0.1, momentum=0.9)
    params = init_params(model, jax.random.key(seed))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


@functools.lru_cache(maxsize=None)
def host_state(*key) -> TrainState:
    """A fresh TrainState in host memory, initialised eagerly once per combination (no compilation per test)."""
    return jax.device_get(make_state(*key))


class Built:
    """What the trainer's partitioning gives: a sharded `init()` and the `abstract` state (the restore target)."""

    def __init__(self, kind, mesh_shape, *, size="tiny", vocab=VOCAB, seed=0, optimizer="adamw"):
        mesh = make_mesh(mesh_shape)
        self.key = (kind, size, vocab, seed, optimizer)
        shapes = jax.eval_shape(lambda: make_state(*self.key))
        self.shardings = jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(mesh, x.shape)), shapes)
        self.abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, self.shardings
        )

    @property
    def host(self):
        return host_state(*self.key)

    def init(self):
        return jax.device_put(self.host, self.shardings)

    def trained(self, step):
        """A state that differs from a fresh init in every leaf, as after `step` updates."""
        params = jax.tree.map(lambda p: p + np.asarray(step, p.dtype), self.host.params)
        state = self.host.replace(step=np.asarray(step, np.int32), params=params)
        return jax.device_put(state, self.shardings)


@pytest.fixture
def vocab_path(tmp_path):
    path = tmp_path / "vocab.txt"
    # BERT's layout: [PAD], [unused0..98], [UNK], [CLS], [SEP], [MASK], then ordinary tokens.
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"tok{i}" for i in range(VOCAB - len(tokens))]
    path.write_text("".join(t + "\n" for t in tokens))
    return path


def save_run(workdir, vocab_path, *, steps, config=None, mesh_shape=(1, 8), data=True):
    """Runs `steps` fake steps, saving as the loop does; returns the last state and the iterator."""
    config = config or make_config()
    built = Built("pretraining", mesh_shape)
    manager = ckpt.create_manager(workdir, config=config)
    iterator = CountingIterator() if data else None
    for step in range(1, steps + 1):
        if data:
            next(iterator)
        # The loop calls save_checkpoint at every step; building the state only when it saves keeps this fast.
        if step == steps or manager.should_save(step):
            ckpt.save_checkpoint(
                manager, step, state=built.trained(step), config=config, vocab_path=vocab_path,
                data_iterator=iterator, force=step == steps,
            )  # fmt: skip
    manager.wait_until_finished()
    manager.close()
    return built.trained(steps), iterator


def snapshot(folder):
    """Every file under `folder` with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(pathlib.Path(folder).rglob("*"))
        if p.is_file()
    }


def assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


# --- Saving -------------------------------------------------------------------------------------------------------


def test_interval_keep_n_and_self_contained_steps(tmp_path, vocab_path):
    config = make_config(checkpoint_every_steps=3)
    save_run(tmp_path / "run", vocab_path, steps=7, config=config)
    folder = tmp_path / "run" / "checkpoints"
    # Saved at 3, 6 (every 3) and 7 (forced, the end); keep-2 pruned step 3 with all its items.
    assert sorted(p.name for p in folder.iterdir()) == ["6", "7"]
    for step in (6, 7):
        step_dir = folder / str(step)
        assert json.loads((step_dir / "data" / "process_0-of-1" / "position.json").read_text()) == step
        assert layout.vocab_file(step_dir).read_bytes() == vocab_path.read_bytes()
        assert layout.load_config(step_dir).to_dict() == json.loads(config.to_json_best_effort())
    assert layout.latest_checkpoint(tmp_path / "run") == folder / "7"
    assert layout.latest_checkpoint(folder) == folder / "7"
    assert layout.latest_checkpoint(folder / "6") == folder / "6"
    assert layout.latest_checkpoint(tmp_path) is None


def test_a_step_whose_save_failed_never_becomes_latest(tmp_path, vocab_path):
    config = make_config()
    built = Built("pretraining", (1, 8))
    manager = ckpt.create_manager(tmp_path / "run", config=config)
    ckpt.save_checkpoint(
        manager, 2, state=built.trained(2), config=config, vocab_path=vocab_path, data_iterator=CountingIterator()
    )
    manager.wait_until_finished()
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(
            manager, 4, state=built.trained(4), config=config, vocab_path=vocab_path,
            data_iterator=CountingIterator(fail_on_save=True),
        )  # fmt: skip
    # A restarted run (a new manager) sees only the complete step.
    assert ckpt.create_manager(tmp_path / "run", config=config).latest_step() == 2
    assert layout.latest_checkpoint(tmp_path / "run").name == "2"


def test_existing_step_is_not_saved_again(tmp_path, vocab_path):
    save_run(tmp_path / "run", vocab_path, steps=2)
    manager = ckpt.create_manager(tmp_path / "run", config=make_config())
    before = snapshot(tmp_path / "run")
    saved = ckpt.save_checkpoint(
        manager, 2, state=Built("pretraining", (1, 8)).init(), config=make_config(), vocab_path=vocab_path,
        data_iterator=None, force=True,
    )  # fmt: skip
    assert not saved and snapshot(tmp_path / "run") == before


# --- Resuming -----------------------------------------------------------------------------------------------------


def resume(workdir, built, *, config=None, init_from="", data_iterator=None, vocab_path=None):
    config = config or make_config()
    manager = ckpt.create_manager(workdir, config=config)
    return ckpt.restore_or_init(
        manager, abstract_state=built.abstract, init_fn=built.init, init_from=init_from, config=config,
        data_iterator=data_iterator, vocab_path=vocab_path,
    )  # fmt: skip


def assert_sharded_like(tree, abstract):
    for leaf, target in zip(jax.tree.leaves(tree), jax.tree.leaves(abstract), strict=True):
        assert leaf.sharding.is_equivalent_to(target.sharding, leaf.ndim)


@pytest.mark.parametrize("save_mesh, restore_mesh", [((8, 1), (1, 8)), ((1, 8), (2, 4))])
def test_resume_onto_another_mesh(tmp_path, vocab_path, save_mesh, restore_mesh):
    """Saved replicated (data parallel) or FSDP over 8, restored into another FSDP layout."""
    saved, saved_iterator = save_run(tmp_path / "run", vocab_path, steps=5, mesh_shape=save_mesh)
    built = Built("pretraining", restore_mesh, seed=1)
    iterator = CountingIterator()
    state, start_step, how = resume(tmp_path / "run", built, data_iterator=iterator, vocab_path=vocab_path)
    assert (how, start_step, int(state.step)) == ("resumed", 5, 5)
    assert_trees_equal(state, saved)
    assert_sharded_like(state, built.abstract)
    assert iterator.position == saved_iterator.position == 5
    assert next(iterator)["input_ids"][0, 0] == 6  # the batch after the last one the saved state consumed


def test_resume_takes_priority_over_init_from(tmp_path, vocab_path):
    save_run(tmp_path / "source", vocab_path, steps=2)
    save_run(tmp_path / "run", vocab_path, steps=4)
    _, start_step, how = resume(
        tmp_path / "run", Built("pretraining", (1, 8)), init_from=str(tmp_path / "source"),
        data_iterator=CountingIterator(),
    )  # fmt: skip
    assert (how, start_step) == ("resumed", 4)


def test_fresh_start(tmp_path):
    built = Built("pretraining", (2, 4))
    state, start_step, how = resume(tmp_path / "run", built, data_iterator=CountingIterator())
    assert (how, start_step) == ("fresh", 0)
    assert_trees_equal(state, built.host)
    assert_sharded_like(state, built.abstract)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (dict(model_size="mini"), "model.size"),
        (dict(model_vocab_size=256), "model.vocab_size"),
        (dict(task="classify"), "task"),
    ],
)
def test_checkpoint_of_another_model_is_refused_and_kept(tmp_path, vocab_path, overrides, named):
    save_run(tmp_path / "run", vocab_path, steps=2)
    before = snapshot(tmp_path / "run")
    config = make_config(**overrides)
    built = Built("pretraining", (1, 8), size=config.model.size, vocab=config.model.vocab_size)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'run' / 'checkpoints' / '2'} .*{named}="):
        resume(tmp_path / "run", built, config=config, data_iterator=CountingIterator())
    assert snapshot(tmp_path / "run") == before


def test_other_vocabulary_is_refused(tmp_path, vocab_path):
    """Same size, other tokens: resuming or starting from the checkpoint would scramble the embeddings."""
    save_run(tmp_path / "run", vocab_path, steps=2)
    shuffled = tmp_path / "other_vocab.txt"
    tokens = vocab_path.read_text().splitlines()
    shuffled.write_text("\n".join(tokens[:104] + tokens[104:][::-1]) + "\n")
    saved_vocab = tmp_path / "run" / "checkpoints" / "2" / "vocab" / "vocab.txt"
    with pytest.raises(CheckpointError, match=rf"^vocabulary {shuffled} is not {saved_vocab}"):
        resume(tmp_path / "run", Built("pretraining", (1, 8)), data_iterator=CountingIterator(), vocab_path=shuffled)
    with pytest.raises(CheckpointError, match=rf"^vocabulary {shuffled} is not {saved_vocab}"):
        resume(
            tmp_path / "finetune", Built("classifier", (1, 8)), config=make_config(task="classify"),
            init_from=str(tmp_path / "run"), vocab_path=shuffled,
        )  # fmt: skip


def test_state_that_does_not_fit_is_refused(tmp_path, vocab_path):
    save_run(tmp_path / "run", vocab_path, steps=2)  # adamw: opt_state holds mu and nu
    with pytest.raises(CheckpointError, match="does not fit this run's train state: opt_state/"):
        resume(tmp_path / "run", Built("pretraining", (1, 8), optimizer="sgd"), data_iterator=CountingIterator())


def test_data_position_must_match(tmp_path, vocab_path):
    save_run(tmp_path / "nodata", vocab_path, steps=2, data=False)
    save_run(tmp_path / "twohosts", vocab_path, steps=2)
    data = tmp_path / "twohosts" / "checkpoints" / "2" / "data"
    (data / "process_0-of-1").rename(data / "process_0-of-2")  # as if saved by two hosts
    (data / "process_1-of-2").mkdir()
    built = Built("pretraining", (1, 8))
    with pytest.raises(CheckpointError, match="saved without the data position"):
        resume(tmp_path / "nodata", built, data_iterator=CountingIterator())
    with pytest.raises(CheckpointError, match=r"\['process_0-of-2', 'process_1-of-2'\], not process_0-of-1"):
        resume(tmp_path / "twohosts", built, data_iterator=CountingIterator())
    # Research code without an input pipeline may still resume a checkpoint without data position.
    assert resume(tmp_path / "nodata", built, data_iterator=None)[2] == "resumed"


def test_real_pipeline_iterator_continues_bit_identically(tmp_path, vocab_path):
    """The input pipeline's PipelineIterator (a tf.data checkpoint) saved and restored through an Orbax step."""
    pretraining = pytest.importorskip("sslm_jax.data.pretraining")
    tf = pytest.importorskip("tensorflow")

    def dataset():
        ds = tf.data.Dataset.range(10_000).shuffle(64, seed=1, reshuffle_each_iteration=True).repeat()
        return ds.map(lambda x: {"x": x * 3}).batch(4)

    config = make_config()
    built = Built("pretraining", (1, 8))
    iterator = pretraining.PipelineIterator(dataset())
    for _ in range(5):
        next(iterator)
    manager = ckpt.create_manager(tmp_path / "run", config=config)
    ckpt.save_checkpoint(
        manager, 5, state=built.trained(5), config=config, vocab_path=vocab_path, data_iterator=iterator, force=True
    )
    uninterrupted = [next(iterator)["x"] for _ in range(3)]  # while Orbax may still be writing
    manager.wait_until_finished()

    restored = pretraining.PipelineIterator(dataset())
    _, start_step, _ = resume(tmp_path / "run", built, data_iterator=restored)
    assert start_step == 5
    for expected in uninterrupted:
        np.testing.assert_array_equal(next(restored)["x"], expected)


# --- init_from: parameters only -----------------------------------------------------------------------------------


@pytest.mark.parametrize("point_at", ["workdir", "step"])
def test_init_from_pretraining_checkpoint_into_classifier(tmp_path, vocab_path, point_at):
    source, _ = save_run(tmp_path / "pretrain", vocab_path, steps=3)
    init_from = tmp_path / "pretrain" if point_at == "workdir" else tmp_path / "pretrain" / "checkpoints" / "3"
    built = Built("classifier", (2, 4), seed=7)
    config = make_config(task="classify")
    state, start_step, how = resume(
        tmp_path / "finetune", built, config=config, init_from=str(init_from), vocab_path=vocab_path
    )
    assert (how, start_step, int(state.step)) == ("init_from", 0, 0)
    assert_trees_equal(state.params["bert"], source.params["bert"])  # encoder and pooler copied
    assert_trees_equal(state.params["classifier"], built.host.params["classifier"])  # the new head stays fresh
    assert_trees_equal(state.opt_state, built.host.opt_state)  # the optimizer starts over
    assert_sharded_like(state, built.abstract)
    assert list((tmp_path / "finetune" / "checkpoints").iterdir()) == []  # nothing saved by starting

    loaded = transplant.load_params(init_from, params=built.init().params)
    assert sorted(loaded.fresh) == ["classifier/bias", "classifier/kernel"]
    source_paths = {"/".join(k) for k in traverse_util.flatten_dict(source.params)}
    assert set(loaded.unused) == {p for p in source_paths if not p.startswith("bert/")}  # the pretraining heads


def test_init_from_errors(tmp_path, vocab_path):
    save_run(tmp_path / "pretrain", vocab_path, steps=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (tmp_path / "nowhere", "does not exist", Built("classifier", (1, 8))),
        (empty, "holds neither", Built("classifier", (1, 8))),
        (tmp_path / "pretrain", r"word_embeddings/embedding has shape \(128, 128\) there but \(256, 128\)",
         Built("classifier", (1, 8), vocab=256)),
    ]  # fmt: skip
    for n, (init_from, message, built) in enumerate(cases):
        with pytest.raises(CheckpointError, match=rf"^init_from={init_from}.*{message}"):
            resume(tmp_path / f"run{n}", built, config=make_config(task="classify"), init_from=str(init_from))


@pytest.mark.parametrize("tree", ["pretraining", "encoder"])
def test_init_from_huggingface_directory(tmp_path, monkeypatch, tree):
    """The Hugging Face branch, with `load_checkpoint` replaced by a stand-in returning numpy parameters, as a
    pretraining tree or a bare BertModel tree ({embeddings, encoder, pooler}: matched as the `bert` subtree)."""
    hf_dir = tmp_path / "bert-hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": VOCAB}))
    hf_config = BertConfig.from_size("tiny", vocab_size=VOCAB)
    pretraining = host_state("pretraining", "tiny", VOCAB, 3, "adamw").params
    hf_params = pretraining if tree == "pretraining" else pretraining["bert"]
    calls = []

    def load_checkpoint(path):
        calls.append(path)
        return hf_config, hf_params

    fake = types.ModuleType("sslm_jax.interop.huggingface")
    fake.load_checkpoint = load_checkpoint
    monkeypatch.setitem(sys.modules, "sslm_jax.interop.huggingface", fake)

    built = Built("classifier", (2, 4))
    state, _, how = resume(tmp_path / "run", built, config=make_config(task="classify"), init_from=str(hf_dir))
    assert how == "init_from" and calls == [os.fspath(hf_dir)]
    assert_trees_equal(state.params["bert"], pretraining["bert"])
    assert_trees_equal(state.params["classifier"], built.host.params["classifier"])
    assert_sharded_like(state, built.abstract)


def test_init_from_huggingface_export_of_a_run(tmp_path, vocab_path):
    """Through the real interop module: a run exported as a Hugging Face directory starts a classifier."""
    huggingface = pytest.importorskip("sslm_jax.interop.huggingface")
    source = host_state("pretraining", "tiny", VOCAB, 5, "adamw").params
    hf_dir = huggingface.save_checkpoint(
        tmp_path / "export", BertConfig.from_size("tiny", vocab_size=VOCAB), source, vocab_file=vocab_path
    )
    built = Built("classifier", (1, 8))
    state, _, how = resume(tmp_path / "run", built, config=make_config(task="classify"), init_from=str(hf_dir))
    assert how == "init_from"
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(np.asarray(x), y, rtol=1e-6, atol=1e-7),
        state.params["bert"], source["bert"],
    )  # fmt: skip
    assert_trees_equal(state.params["classifier"], built.host.params["classifier"])


# --- Start-up errors ------------------------------------------------------------------------------------------------


def test_unwritable_workdir_fails_before_writing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match=rf"^workdir {blocker / 'run'} is not writable"):
        ckpt.create_manager(blocker / "run", config=make_config())
    assert blocker.read_text() == "not a folder"

    if os.geteuid() == 0:
        return  # root writes anywhere: the permission case cannot be shown
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match=rf"^workdir {locked} is not writable"):
            ckpt.create_manager(locked, config=make_config())
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_bad_intervals_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="keep_checkpoints=0"):
        ckpt.create_manager(tmp_path / "run", config=make_config(keep_checkpoints=0))
    assert not (tmp_path / "run").exists()


# --- Preemption -----------------------------------------------------------------------------------------------------


def test_sigterm_sets_the_flag_and_handlers_are_restored():
    previous = signal.getsignal(signal.SIGTERM)
    with PreemptionHandler() as preemption:
        assert not preemption.requested and not preemption.should_stop(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.requested and preemption.received == signal.SIGTERM
        assert preemption.should_stop(2)
    assert signal.getsignal(signal.SIGTERM) == previous
