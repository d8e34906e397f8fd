"""Torch-free Hugging Face checkpoints, one module per model type; each offers `load_checkpoint(directory)` ->
(model config, params) and `save_checkpoint(directory, config, params, ...)`."""

# config.json's model_type -> the module that converts it (imported on use: reading weights is not always needed).
HF_MODULES = {
    "bert": "sslm_jax.interop.huggingface",
    "gpt2": "sslm_jax.interop.hf_gpt2",
    "electra": "sslm_jax.interop.hf_electra",
}
