"""Offline ELECTRA demo: a tiny generator + discriminator pretrained on the embedded standard-library corpus.

Command (from the repository root, after the README's set-up):
    sslm pretrain --config=configs/electra_demo.py --workdir=/tmp/electra_demo

Hardware: 2 CPU cores. Runtime: 3 min 40 s measured on 2 idle cores (800 steps; a step costs about twice the BERT
demo's), vocabulary training included.
Reported: the generator's masked-token accuracy next to the unigram baseline, and the discriminator's held-out
accuracy (`rtd_accuracy`) next to `rtd_all_original_accuracy` (calling every token original), with precision and
recall on replaced tokens. Measured (BENCHMARKS.md, "ELECTRA demo"): at ELECTRA-Small's learning rate, 5e-4, the
discriminator ends just above the all-original baseline (0.770 vs 0.766 held out) with precision 0.60 and recall 0.05
on replaced tokens: it flags few replacements, but more right than wrong. At 2e-3 (the BERT demo's rate) it stayed at
the baseline with precision and recall 0, and 1e-3 was in between (0.774 vs 0.772, precision 0.58). The generator
learns too (0.096 masked-token accuracy vs a unigram 0.045). Ends with the generator's fill-mask guesses.
The discriminator is slow here because its replacements are hard, not because it is broken: this generator samples
close to unigram frequencies, frequent tokens that fit almost anywhere. `--config.replacement_temperature=4` samples
flatter, easier replacements, and the discriminator visibly learns (0.808 vs 0.759, precision 0.69, recall 0.37);
the default stays the paper's 1 (BENCHMARKS.md, "Is ELECTRA's discriminator defective?").

`configs/electra_demo.py:smoke` shrinks everything to seconds, for tests.
"""

from configs import bert_demo


def get_config(arg: str | None = None):
    c = bert_demo.get_config("smoke" if arg == "smoke" else None)
    c.task = "electra"
    c.model.family = "electra"
    c.disc_weight = 50.0
    # ELECTRA-Small's rate. At the BERT demo's 2e-3 the discriminator settled on "all original" (BENCHMARKS.md).
    c.learning_rate = 5e-4
    if arg != "smoke":
        # A step costs about twice BERT's (generator + discriminator over every token): fewer steps fit 5 minutes.
        c.total_steps = 800
        c.eval_every_steps = 400
        c.checkpoint_every_steps = 400
    if arg not in (None, "", "smoke"):
        raise ValueError(f"unknown variant {arg!r} of electra_demo.py; use no variant or 'smoke'")
    return c
