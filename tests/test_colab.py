"""The Colab notebooks run: each is executed top to bottom on CPU (smoke mode) and must produce its outputs.

Static checks (fast): valid notebooks, code that compiles, sslm_jax imports and config files that exist, an
"Open in Colab" badge to the notebook itself, an install cell with the REPO form field that stops with a clear
message when it is empty. Execution (slow): nbclient runs every cell in a kernel started in the repository root,
with SSLM_NOTEBOOK_SMOKE=1 (the smoke variants) and SSLM_NOTEBOOK_SKIP_INSTALL=1 (the environment under test is the
install), with TMPDIR pointing at a fresh folder for the notebooks' runs.
"""

import ast
import csv
import importlib
import json
import pathlib
import re
import subprocess
import sys

import pytest

from _sslm_runs import TEST_XLA_FLAGS, compile_cache_env, session_compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
EXPECTED = ("electra.ipynb", "finetune_classifier.ipynb", "gpt_generate.ipynb", "pretrain_bert.ipynb")


def _cells(notebook: pathlib.Path, kind: str = "code") -> list[str]:
    nb = json.loads(notebook.read_text())
    assert nb["nbformat"] == 4
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


def test_one_notebook_per_topic():
    assert tuple(p.name for p in NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_compiles_and_its_imports_exist(notebook):
    for source in _cells(notebook):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sslm_jax"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):  # a submodule: `from sslm_jax.interop import hf_electra`
                        importlib.import_module(f"{node.module}.{alias.name}")
        for config in re.findall(r'load_config\(f?"([^"{]+)', source):
            assert (ROOT / config.partition(":")[0]).is_file(), f"{notebook.name}: {config} does not exist"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_its_badge_and_the_install_cell(notebook):
    intro = _cells(notebook, "markdown")[0]
    (link,) = re.findall(r"\(https://colab\.research\.google\.com/github/([^)]+)\)", intro)
    assert link.endswith(f"/blob/main/colab/{notebook.name}"), link
    assert f"colab/{notebook.name})" in (ROOT / "README.md").read_text(), "README's On Colab section lacks it"
    install = _cells(notebook)[0]
    assert 'REPO = ""  #@param {type:"string"}' in install and "colab/constraints.txt" in install


def test_install_cell_outside_a_checkout_asks_for_repo(tmp_path):
    install = _cells(ROOT / "colab" / "pretrain_bert.ipynb")[0]
    out = subprocess.run([sys.executable, "-c", install], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Set REPO (the form field above)" in out.stderr, out.stderr


def test_constraints_pin_only_what_the_package_installs():
    """colab/constraints.txt must not rot: every pin names a dependency of ours (or jax's jaxlib)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    ours = {re.split(r"[<>=\[ ]", d.strip().strip('",'))[0].lower() for d in deps.splitlines() if '"' in d}
    pins = [line for line in (ROOT / "colab" / "constraints.txt").read_text().splitlines() if line and line[0] != "#"]
    for pin in pins:
        name, _, version = pin.partition("==")
        assert version and (name.lower() in ours | {"jaxlib"}), pin


# --- Execution ------------------------------------------------------------------------------------------------


def _sst2_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """The shared SST-2 files when present; otherwise a small labelled file of the same layout (no download)."""
    shared = ROOT.parent / "shared" / "data" / "sst2"
    if (shared / "train.tsv").is_file() and (shared / "dev.tsv").is_file():
        return shared
    folder = tmp_path / "sst2"
    folder.mkdir()
    good = ["a gripping , funny film .", "warm and moving .", "the best film of the year ."]
    bad = ["dull and overlong .", "a tedious mess .", "badly acted and worse written ."]
    for split, repeat in (("train.tsv", 10), ("dev.tsv", 2)):
        with open(folder / split, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["sentence", "label"])
            writer.writerows([(t, 1) for t in good * repeat] + [(t, 0) for t in bad * repeat])
    return folder


def _execute(notebook: pathlib.Path, tmp_path, monkeypatch) -> tuple[str, list[str]]:
    """Runs the notebook; returns its printed text and the MIME types of its rich outputs."""
    import nbclient  # the `test` extra brings nbclient, nbformat and ipykernel
    import nbformat

    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("SSLM_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("SSLM_NOTEBOOK_SKIP_INSTALL", "1")
    monkeypatch.setenv("SSLM_SST2_DIR", str(_sst2_dir(tmp_path)))
    monkeypatch.setenv("TMPDIR", str(runs))
    monkeypatch.setenv("XLA_FLAGS", TEST_XLA_FLAGS)  # not conftest's 8 fake devices (for the in-process tests)
    if cache := session_compile_cache():  # the smoke configs the README and CLI tests also compile
        for name, value in compile_cache_env(cache).items():
            monkeypatch.setenv(name, value)
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    text, mimes = [], []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
            mimes += list(output.get("data", {}))
    return "\n".join(text), mimes


@pytest.mark.slow
def test_pretrain_bert_notebook_runs(tmp_path, monkeypatch):
    text, mimes = _execute(ROOT / "colab" / "pretrain_bert.ipynb", tmp_path, monkeypatch)
    assert "image/png" in mimes, "no curves"
    assert len(re.findall(r"^fill-mask: .+\[MASK\].+ -> \S+ \d\.\d\d", text, flags=re.M)) == 2, text[-3000:]
    assert "'mlm_accuracy'" in text and "smoke run: True" in text
    assert re.search(r"exported: \[.*'config\.json', 'model\.safetensors'.*'vocab\.txt'\]", text), text[-3000:]
    assert "fill-mask from the export:" in text


@pytest.mark.slow
def test_finetune_classifier_notebook_runs(tmp_path, monkeypatch):
    text, mimes = _execute(ROOT / "colab" / "finetune_classifier.ipynb", tmp_path, monkeypatch)
    assert "image/png" in mimes, "no curves"
    assert "SST-2 from" in text and "'accuracy'" in text, text[-3000:]
    assert len(re.findall(r"^classify: \{.*'probabilities': \{'0': .*'1': ", text, flags=re.M)) == 2, text[-3000:]


@pytest.mark.slow
def test_gpt_generate_notebook_runs(tmp_path, monkeypatch):
    text, mimes = _execute(ROOT / "colab" / "gpt_generate.ipynb", tmp_path, monkeypatch)
    assert "image/png" in mimes, "no curves"
    assert len(re.findall(r"^generated: '(def read_file|class Parser)", text, flags=re.M)) == 4, text[-3000:]
    assert "'perplexity'" in text and "'merges.txt'" in text and "generated from the export: '" in text


@pytest.mark.slow
def test_electra_notebook_runs(tmp_path, monkeypatch):
    text, mimes = _execute(ROOT / "colab" / "electra.ipynb", tmp_path, monkeypatch)
    assert "image/png" in mimes, "no curves"
    assert "'rtd_accuracy'" in text and "'rtd_all_original_accuracy'" in text, text[-3000:]
    assert re.search(r"^fill-mask: .+ -> \S+ \d\.\d\d", text, flags=re.M), text[-3000:]
    for head in ("discriminator", "generator"):
        assert re.search(
            rf"^exported: {head} \[.*'config\.json', 'model\.safetensors'.*'vocab\.txt'\]", text, flags=re.M
        )
