"""The Colab notebooks stay runnable: valid notebooks whose code compiles and whose sslm_jax imports exist.

Running them needs a Colab runtime (and network for the install cell); what they call is tested elsewhere.
"""

import ast
import importlib
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))


def _code(notebook: pathlib.Path) -> list[str]:
    nb = json.loads(notebook.read_text())
    assert nb["nbformat"] == 4
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_there_is_a_notebook():
    assert NOTEBOOKS, "colab/ holds no notebook"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_compiles_and_its_imports_exist(notebook):
    for source in _code(notebook):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sslm_jax"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{notebook.name}: {node.module}.{alias.name} does not exist"
        for config in re.findall(r'load_config\("([^"]+)"\)', source):
            assert (ROOT / config.partition(":")[0]).is_file(), f"{notebook.name}: {config} does not exist"
