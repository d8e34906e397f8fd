"""Test-wide setup: 8 fake CPU devices for sharding tests (XLA optimisation off: tiny programs), quiet TensorFlow,
the shared data folder, a compilation cache for the subprocesses."""

import os
import pathlib
import shutil
import tempfile

# Must happen before jax initialises its backends (i.e. before any test module touches a device). The tests in this
# process compile hundreds of tiny programs, for which XLA:CPU's LLVM optimisation (level 2 by default) costs more
# than it saves: level 0 took test_step + test_bert + test_electra_objective from 198 s to 128 s on 2 workers. It
# changes code generation, not the semantics of any op. Subprocesses (`sslm_env`, the README examples, the notebooks)
# set their own XLA_FLAGS: one device, not 8, and the same level. (_sslm_runs imports only the standard library.)
from _sslm_runs import SESSION_CACHE_VARIABLE, SHARED_RUNS_VARIABLE, TEST_XLA_FLAGS

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """`../shared/data` beside the checkout (SST-2, WikiText-2); tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (see the project README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def torch():
    """PyTorch, for parity tests against Hugging Face; installed with `pip install torch==2.13.0`."""
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


@pytest.fixture(scope="session")
def tiny_classifier(shared_data):
    """A tiny BERT pretrained and fine-tuned on SST-2 rows, built once per session for both workers (_shared_runs)."""
    import _shared_runs

    return _shared_runs.tiny_classifier(shared_data)


# The longest test files (CI durations of session 13), handed out first. With `-n 2 --dist loadfile`, xdist gives
# whole files to the workers in queue order, so the README examples (one test, ~10 minutes) used to start last and
# run alone while the other worker idled. Longest first, the two workers end close together. xdist's own queue order
# (files with the most tests first) is turned off in pytest_configure for this one to hold.
_LONGEST_FIRST = (
    "test_readme.py", "test_operations.py", "test_deploy_cli.py", "test_loop.py", "test_objectives_bench.py",
    "test_colab.py", "test_gpt_cli.py", "test_finetune_cli.py", "test_electra_cli.py", "test_tokenizer.py",
    "test_pretraining.py", "test_serve_cli.py", "test_objectives.py", "test_cli.py", "test_electra_objective.py",
    "test_bench_accelerator.py",
)  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


_OWN_FOLDERS = pytest.StashKey[list]()  # the session folders this process made (and removes at the end)


def pytest_configure(config):
    # xdist's loadfile queue keeps the collection order (_LONGEST_FIRST) instead of putting files with more tests first.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    # Two folders, made by the controller before xdist starts its workers, which inherit them:
    # - one jax compilation cache for the session's subprocesses (`sslm` commands, notebooks, benches), opted into
    #   with _sslm_runs.session_compile_cache(): the README, the notebooks and the CLI tests run the same smoke
    #   configs, and each program need be compiled once (a hit is XLA's same executable). In-process tests do not use
    #   it: jax read its settings when first imported;
    # - the runs that several test files share, built once for both workers (_shared_runs.built_once).
    made = []
    for variable, prefix in ((SESSION_CACHE_VARIABLE, "sslm-test-jax-cache-"), (SHARED_RUNS_VARIABLE, "sslm-test-runs-")):
        if variable not in os.environ:
            os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
            made.append(variable)
    config.stash[_OWN_FOLDERS] = made


def pytest_unconfigure(config):
    for variable in config.stash.get(_OWN_FOLDERS, []):
        shutil.rmtree(os.environ.pop(variable), ignore_errors=True)
