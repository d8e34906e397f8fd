"""Offline ELECTRA demo: a tiny generator + discriminator pretrained on the embedded standard-library corpus.

Command (from the repository root, after the README's set-up):
    sslm pretrain --config=configs/electra_demo.py --workdir=/tmp/electra_demo

Hardware: 2 CPU cores. Runtime: 800 steps, sized for 5 minutes on 2 idle cores (a step costs about twice the BERT
demo's); not yet timed on an idle machine.
Reported: the generator's masked-token accuracy next to the unigram baseline, and the discriminator's held-out
accuracy (`rtd_accuracy`) next to `rtd_all_original_accuracy` (calling every token original), with precision and
recall on replaced tokens. Measured so far (BENCHMARKS.md): the generator learns (0.149 vs a unigram 0.058 after
1,000 steps), but at this size and budget the discriminator has not yet beaten the all-original baseline (its
replaced-vs-original AUC was 0.55): detecting a plausible replacement needs context the tiny model has not learned.
Ends with the generator's fill-mask guesses.

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
