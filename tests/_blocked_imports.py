"""Python source that makes packages look uninstalled in a subprocess: `import x` raises ModuleNotFoundError and
`importlib.util.find_spec("x")` returns None, as on a machine without them (libraries such as torch probe optional
packages with find_spec, so raising from a finder would not be what a real machine does)."""

from __future__ import annotations


def source(blocked: tuple[str, ...]) -> str:
    """Code to run first in the subprocess (prepend it to `python -c`, or save it as sitecustomize.py)."""
    return f"""
import importlib.machinery as _machinery

_BLOCKED = {tuple(blocked)!r}
_find_spec = _machinery.PathFinder.find_spec.__func__


def _absent(cls, name, path=None, target=None):
    if name.split(".")[0] in _BLOCKED:
        return None
    return _find_spec(cls, name, path, target)


_machinery.PathFinder.find_spec = classmethod(_absent)
"""
