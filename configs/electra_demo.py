"""Offline ELECTRA demo: a tiny generator + discriminator pretrained on the embedded standard-library corpus.

Command (from the repository root, after the README's set-up):
    sslm pretrain --config=configs/electra_demo.py --workdir=/tmp/electra_demo

Hardware: 2 CPU cores. Expected runtime: under 5 minutes, vocabulary training included (measured figures in
BENCHMARKS.md).
Expected result: the discriminator's held-out accuracy (`rtd_accuracy`) above `rtd_all_original_accuracy` (calling
every token original), with precision and recall on replaced tokens well above zero; the generator's masked-token
accuracy above the unigram baseline. Ends with the generator's fill-mask guesses.

`configs/electra_demo.py:smoke` shrinks everything to seconds, for tests.
"""

from configs import bert_demo


def get_config(arg: str | None = None):
    c = bert_demo.get_config("smoke" if arg == "smoke" else None)
    c.task = "electra"
    c.model.family = "electra"
    c.disc_weight = 50.0
    if arg != "smoke":
        # A step costs about twice BERT's (generator + discriminator over every token): fewer steps fit 5 minutes.
        c.total_steps = 800
        c.eval_every_steps = 400
        c.checkpoint_every_steps = 400
    if arg not in (None, "", "smoke"):
        raise ValueError(f"unknown variant {arg!r} of electra_demo.py; use no variant or 'smoke'")
    return c
