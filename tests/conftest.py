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
