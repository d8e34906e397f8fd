"""`imports_blocked`: import a third-party package without the optional extras it would load if they were installed.

Some packages import heavy optional dependencies at their own import time only to support features we never use:
tensorboardX imports PyTorch (to accept torch tensors), and Keras, which TensorFlow imports eagerly, imports
scikit-learn (for its sklearn wrappers) and matplotlib (for its image plots). In a training process that cost 4.5 s,
1.3 s and ~1 s of every start on CPU, plus their shared libraries. These packages fall back cleanly when the extra
is absent (`try: import torch except ImportError`), so we make it look absent for the duration of that one import.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator


@contextlib.contextmanager
def imports_blocked(*names: str) -> Iterator[None]:
    """Inside the block, `import NAME` raises ImportError for each of `names` not already imported.

    A `None` entry in `sys.modules` is the import system's documented way to make an import fail; the entries are
    removed on exit, so later imports of these packages work as usual. A package already loaded (a user's notebook
    that imported torch first) is left alone. Imports on other threads during the block see the same absence, so use
    this around a single import at start-up, not around running code.
    """
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
