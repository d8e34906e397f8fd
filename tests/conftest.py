"""Test-wide setup: 8 fake CPU devices for sharding tests, quiet TensorFlow, the shared data folder."""

import os
import pathlib

# Must happen before jax initialises its backends (i.e. before any test module touches a device).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
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


# The longest test files (CI durations of session 12), handed out first. With `-n 2 --dist loadfile`, xdist gives
# files to workers in collection order, so the README examples (alphabetically late, ~10 minutes) used to start
# last and run alone while the other worker idled. Longest first, the two workers end close together.
_LONGEST_FIRST = (
    "test_readme.py", "test_operations.py", "test_objectives_bench.py", "test_deploy_cli.py", "test_loop.py",
    "test_colab.py", "test_electra_cli.py", "test_gpt_cli.py", "test_finetune_cli.py", "test_bench_accelerator.py",
)  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order
