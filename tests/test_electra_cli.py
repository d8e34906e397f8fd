"""`sslm pretrain` of an ELECTRA on bad input: one-line errors, nothing written; the ELECTRA loader refuses another
model. The chain itself (pretrain → fill-mask with the generator → fine-tune of the discriminator → export-hf, which
`transformers` loads) is README.md's ELECTRA example, run and checked by tests/test_readme.py."""

import json
import pathlib

import pytest

from _sslm_runs import assert_cli_error, sslm

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = f"--config={ROOT / 'configs' / 'electra_demo.py'}:smoke"


@pytest.mark.slow
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
