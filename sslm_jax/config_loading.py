"""Load `configs/<name>.py[:arg]` the way `sslm --config=...` does, for notebooks, tests and research code.

    config = load_config("configs/bert_demo.py:smoke")

Config files import their siblings as `from configs import base`; the folder that holds `configs/` is put on
`sys.path` while the file loads, so that works from any working directory.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import ml_collections

from sslm_jax.errors import ConfigError


def load_config(spec: str, *, lock: bool = True) -> ml_collections.ConfigDict:
    """`path/to/config.py[:arg]` -> the ConfigDict of `get_config(arg)` (locked: unknown keys are errors)."""
    path_str, _, arg = spec.partition(":")
    path = pathlib.Path(path_str)
    if not path.is_file():
        raise ConfigError(f"config file {path_str} does not exist")
    root = str(path.resolve().parent.parent)
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        module_spec = importlib.util.spec_from_file_location(f"_sslm_config_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        if added:
            sys.path.remove(root)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path_str} defines no get_config(arg)")
    config = module.get_config(arg or None)
    if lock:
        config.lock()
    return config


def config_dir_on_path(config_file: str) -> None:
    """Make `from configs import base` work inside a config loaded by absl's config_flags."""
    root = str(pathlib.Path(config_file.partition(":")[0]).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
