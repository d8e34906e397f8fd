"""Checkpoints as data: their layout and items (`layout`), and parameter transplant between runs (`transplant`).

Below training and inference alike: both read checkpoints through here; only `sslm_jax.training.checkpointing`
writes them.
"""
