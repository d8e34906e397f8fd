"""Export an sslm run's model as a Hugging Face directory (`sslm export-hf`): BERT, ELECTRA (a pretraining run: its
discriminator and generator as two directories), or GPT-2 for causal-LM runs.

    export_hf("runs/sst2", "export/sst2")
    # then, in PyTorch: transformers.BertForSequenceClassification.from_pretrained("export/sst2")
    #                   (a causal-LM run: transformers.GPT2LMHeadModel.from_pretrained(...))
    #                   transformers.AutoTokenizer.from_pretrained("export/sst2")

The directory holds config.json (with `id2label` / `label2id` from the label names saved with a fine-tuning
checkpoint), model.safetensors, the run's vocab.txt and a tokenizer config with its casing.
"""

from __future__ import annotations

import os
import pathlib

import jax

from sslm_jax.errors import CheckpointError
from sslm_jax.inference.loading import load_model
from sslm_jax.interop import huggingface


def export_hf(
    path: str | os.PathLike, out: str | os.PathLike, *, head: str = "auto", overwrite: bool = False
) -> pathlib.Path:
    """Writes the model of `path` (an sslm workdir or checkpoint, pretraining or fine-tuning) to `out`.

    Args:
      path: the run's workdir (its latest checkpoint) or one `checkpoints/<step>` directory.
      out: the new Hugging Face directory; an existing non-empty one is refused unless `overwrite`.
      head: "auto" (BertForPreTraining for pretraining runs, BertForSequenceClassification for fine-tuning), or a
        smaller head the weights contain: "masked_lm" or "encoder".
      overwrite: replace an existing directory at `out`.

    Returns:
      `out` as a Path. Nothing is written unless the whole export is valid.
    """
    loaded = load_model(path, host_tokenizer=True)  # copies the tokenizer's files, never runs it: no TF
    if loaded.kind == "compressed":
        raise CheckpointError(
            f"{loaded.path} is a quantized or pruned model: export the run it was made from, or make a portable "
            "model of it (`sslm export`)"
        )
    if loaded.kind != "sslm":
        raise CheckpointError(f"{loaded.path} is already a Hugging Face directory; nothing to export")
    if loaded.head == "causal_lm":  # a GPT run: GPT2LMHeadModel, with the run's vocab.json and merges.txt
        from sslm_jax.interop import hf_gpt2

        if head not in ("auto", "causal_lm"):
            raise CheckpointError(f"{loaded.path} is a causal LM: it exports as head='causal_lm' only, not {head!r}")
        return hf_gpt2.save_checkpoint(
            out, loaded.model_config, jax.device_get(loaded.params), tokenizer_dir=loaded.vocab_path.parent,
            overwrite=overwrite,
        )  # fmt: skip
    keeps_classifier = loaded.head == "classification" and head in ("auto", "classification")
    if keeps_classifier and getattr(loaded.model_config, "pooling", "cls") != "cls":
        # Hugging Face's BertForSequenceClassification always reads the [CLS] pooler; no class averages tokens.
        raise CheckpointError(
            f"{loaded.path} is a classifier with model.pooling={loaded.model_config.pooling!r}, which no Hugging Face "
            "class computes (they pool [CLS]); fine-tune with --config.model.pooling=cls to export it"
        )
    id2label = loaded.label_names if keeps_classifier and not loaded.is_regression else None
    if loaded.run_config.model.family == "electra":
        return _export_electra(loaded, out, head=head, id2label=id2label, overwrite=overwrite)
    return huggingface.save_checkpoint(
        out,
        loaded.model_config,
        jax.device_get(loaded.params),
        head=head,
        vocab_file=loaded.vocab_path,
        do_lower_case=loaded.tokenizer.lower_case,
        id2label=id2label,
        overwrite=overwrite,
        max_length=loaded.max_seq_len,  # texts are cut where the run cuts them
    )


def _export_electra(loaded, out, *, head: str, id2label, overwrite: bool) -> pathlib.Path:
    """An ELECTRA run: a pretraining run writes `out/discriminator` (ElectraForPreTraining) and `out/generator`
    (ElectraForMaskedLM) with head "auto", or one of them with head "discriminator" / "generator"; a fine-tuned run
    writes ElectraForSequenceClassification."""
    from sslm_jax.interop import hf_electra

    params = jax.device_get(loaded.params)
    options = dict(
        vocab_file=loaded.vocab_path, do_lower_case=loaded.tokenizer.lower_case, overwrite=overwrite,
        max_length=loaded.max_seq_len,
    )  # fmt: skip
    if loaded.head == "pretraining" and head == "auto":
        hf_electra.save_pretraining_checkpoints(out, loaded.model_config, params, **options)
        return pathlib.Path(out)
    return hf_electra.save_checkpoint(out, loaded.model_config, params, head=head, id2label=id2label, **options)
