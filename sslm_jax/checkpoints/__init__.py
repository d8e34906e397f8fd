"""Checkpoints as data: their layout and items (`layout`), the manifest that proves a step intact (`integrity`),
keep-N deletion that a kill cannot leave half done (`deletion`), and parameter transplant between runs (`transplant`).

Below training and inference alike: both read checkpoints through here; only `sslm_jax.training.checkpointing`
writes them.
"""
