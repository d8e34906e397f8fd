"""End to end on a tiny ELECTRA: `sslm pretrain --config=configs/electra_demo.py:smoke` → `sslm finetune` of the
discriminator → `sslm fill-mask` with the generator, and the one-line errors of bad input."""

import json
import pathlib

import pytest

from _sslm_runs import assert_cli_error, sslm

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = f"--config={ROOT / 'configs' / 'electra_demo.py'}:smoke"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("electra") / "run"
    sslm("pretrain", SMOKE, f"--workdir={workdir}")
    return workdir


def test_pretraining_reports_both_models(run):
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("mlm_accuracy", "rtd_accuracy", "eval_rtd_precision", "eval_rtd_recall", "eval_rtd_all_original_accuracy"):
        assert key in last, sorted(last)


def test_the_discriminator_fine_tunes_and_the_generator_fills_masks(run, tmp_path, shared_data):
    out = sslm("finetune", f"--config={ROOT / 'configs' / 'glue.py'}:files,smoke", f"--workdir={tmp_path / 'ft'}",
               f"--config.init_from={run}", f"--config.data.train_files={shared_data / 'sst2' / 'train.tsv'}",
               f"--config.data.eval_files={shared_data / 'sst2' / 'dev.tsv'}")  # fmt: skip
    assert "final eval: accuracy=" in out.stdout
    assert "[MASK] 1:" in sslm("fill-mask", f"--workdir={run}", "the [MASK] is closed .").stdout


def test_export_hf_writes_both_models_that_transformers_loads(run, tmp_path):
    import transformers

    sslm("export-hf", f"--workdir={run}", f"--out={tmp_path / 'hf'}")
    for name, cls in (("discriminator", "ElectraForPreTraining"), ("generator", "ElectraForMaskedLM")):
        config = json.loads((tmp_path / "hf" / name / "config.json").read_text())
        assert config["architectures"] == [cls]
        model = getattr(transformers, cls).from_pretrained(tmp_path / "hf" / name)
        tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf" / name)
        inputs = tokenizer("the file is closed .", return_tensors="pt")
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_bad_input_is_one_line(tmp_path):
    out = sslm("pretrain", SMOKE, f"--workdir={tmp_path / 'a'}", "--config.model.generator_hidden_fraction=0.3",
               check=False)  # fmt: skip
    assert_cli_error(out, "pretrain", "does not divide the heads")
    assert_cli_error(sslm("pretrain", SMOKE, f"--workdir={tmp_path / 'b'}", "--config.disc_weight=-1", check=False),
                   "pretrain", "disc_weight=-1")  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_electra_loader_refuses_another_model(tmp_path):
    from sslm_jax.errors import CheckpointError
    from sslm_jax.interop import hf_electra

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="is not an ELECTRA checkpoint"):
        hf_electra.load_checkpoint(tmp_path)
