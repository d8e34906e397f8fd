"""TensorFlow stays a quiet, CPU-only guest: it sees no GPU/TPU, and it prints no CUDA probe on a CPU machine."""

import os
import subprocess
import sys

import pytest

from sslm_jax.data import tf_setup

_CHILD = """
import os
import jax  # sets TF_CPP_MIN_LOG_LEVEL=1 itself
import sslm_jax.data.pretraining, sslm_jax.data.tokenizer, sslm_jax.data.bpe  # what the pipelines import
from sslm_jax.data.tf_setup import tf

print(tf.reduce_sum(tf.range(4)).numpy())  # TF ran an op: its runtime (and any CUDA probe) is initialised
for kind in ("GPU", "TPU"):
    assert not tf.config.get_visible_devices(kind), tf.config.get_visible_devices(kind)
assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1", "the quiet level leaked into the environment (JAX, children)"
print("tf:", sorted({d.device_type for d in tf.config.get_visible_devices()}), "jax:", jax.default_backend())
import sys, importlib.util
for extra in ("sklearn", "matplotlib"):  # Keras would have loaded them (seconds of every start); they still import
    if importlib.util.find_spec(extra):
        assert extra not in sys.modules, f"TensorFlow's import loaded {extra}"
        importlib.import_module(extra)
"""


def _clean_env():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # conftest sets it for the in-process tests
    return env


def _assert_quiet(stderr: str):
    for noise in ("cuInit", "E0000", "I0000", "cuda drivers"):
        assert noise not in stderr, stderr[-2000:]


def test_tf_sees_only_the_cpu_and_says_nothing_about_cuda():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tf: ['CPU']" in out.stdout, out.stdout
    _assert_quiet(out.stderr)


def test_cli_is_quiet(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat .\nthe dog sat on the log .\n" * 20)
    for args in (["--help"], ["train-tokenizer", f"--input={corpus}", "--vocab-size=150", f"--out={tmp_path / 'v'}"]):
        out = subprocess.run(
            [sys.executable, "-m", "sslm_jax", *args], capture_output=True, text=True, timeout=300, env=_clean_env()
        )
        assert "usage: sslm <command>" in out.stdout if args == ["--help"] else out.returncode == 0, out.stderr[-3000:]
        _assert_quiet(out.stderr)


def test_held_back_stderr_is_replayed_when_the_block_fails(capfd):
    with tf_setup._stderr_kept_unless_failing():
        os.write(2, b"loading chatter\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError):
        with tf_setup._stderr_kept_unless_failing():
            os.write(2, b"why it failed\n")
            raise ImportError("no such library")
    assert capfd.readouterr().err == "why it failed\n"


@pytest.mark.accelerator
def test_jax_keeps_the_accelerator_when_the_pipeline_runs():
    import jax

    if jax.default_backend() == "cpu":
        pytest.skip("no GPU/TPU here")
    from sslm_jax.data.tf_setup import tf

    assert tf.reduce_sum(tf.range(4)).numpy() == 6
    assert not tf.config.get_visible_devices("GPU") and not tf.config.get_visible_devices("TPU")
    x = jax.numpy.ones((1024, 1024))
    assert float((x @ x)[0, 0]) == 1024.0 and x.devices() <= set(jax.devices())


def test_autograph_leaves_our_pipeline_functions_alone(monkeypatch):
    """Building a whole pretraining pipeline (token masking, NSP pairs: its maps, filters and scans) makes AutoGraph
    rewrite none of its functions (start-up time, `tf_setup.skip_autograph`), and the batches come out as usual.
    The probe itself sees AutoGraph rewrite a function of another module."""
    from tensorflow.python.autograph.impl import api

    from sslm_jax.data.pretraining import pretraining_dataset
    from sslm_jax.data.tf_setup import tf
    from sslm_jax.data.tokenizer import BERT_RESERVED_TOKENS, WordPieceTokenizer

    converted = []
    real = api._convert_actual
    monkeypatch.setattr(api, "_convert_actual", lambda f, *a, **k: converted.append(f.__module__) or real(f, *a, **k))
    docs = tf.data.Dataset.from_tensor_slices(["w1 w2 w3 .\nw4 w5 .", "w6 w7 w8 w9 .\nw1 w2 ."] * 8)
    list(docs.map(lambda doc: tf.strings.length(doc)).take(1))
    assert converted == [__name__], converted
    converted.clear()
    tokenizer = WordPieceTokenizer([*BERT_RESERVED_TOKENS, ".", *(f"w{i}" for i in range(1, 10))])
    dataset = pretraining_dataset(
        docs, tokenizer, objective="nsp", max_seq_len=16, max_predictions_per_seq=3, mask_rate=0.15,
        masking="token", short_seq_prob=0.1, train=True, per_host_batch=2, seed=0, shuffle_buffer=4,
    )  # fmt: skip
    batch = next(iter(dataset))
    assert batch["input_ids"].shape == (2, 16) and int(tf.reduce_sum(batch["masked_weights"])) > 0
    assert converted == [], f"AutoGraph rewrote functions of {sorted(set(converted))}"
