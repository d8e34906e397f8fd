"""Experiment configs: each file defines `get_config(arg)`; load one with `sslm_jax.config_loading.load_config`."""
