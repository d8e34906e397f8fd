"""Prompt -> response rows: the loss covers the response only, nothing is split silently, bad rows are one line."""

import json

import numpy as np
import pytest

from configs import base
from sslm_jax.data import causal_sft
from sslm_jax.data.pretraining import PipelineIterator
from sslm_jax.errors import ConfigError, DataError


class ToyTokenizer:
    """Word "wK" -> id K; end-of-text 2."""

    eot_id = 2

    def encode(self, texts):
        return [[int(word[1:]) for word in text.split()] for text in texts]


def test_encode_keeps_the_response_whole_and_cuts_old_prompt_tokens():
    rows, stats = causal_sft.encode(
        [("w5 w6 w7 w8", "w9"), ("w3", "w10 w11 w12 w13 w14 w15"), ("", "w4")], ToyTokenizer(), max_seq_len=5
    )
    assert rows["input_ids"].tolist() == [[6, 7, 8, 9, 2], [2, 4, 2, 0, 0]]
    assert rows["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert rows["loss_weights"].tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 0, 0]]
    assert stats == causal_sft.SftStats(examples=2, dropped=1, prompts_cut=1)


def _config(tmp_path, rows, **overrides):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = base.get_config().data
    c.train_files, c.format, c.text_field, c.eval_fraction = str(path), "jsonl", "prompt,response", 0.25
    c.update(overrides)
    return c


def test_a_row_without_response_is_one_line(tmp_path):
    config = _config(tmp_path, [{"prompt": "w1", "response": "w2"}, {"prompt": "w3"}])
    with pytest.raises(DataError, match=r"train.jsonl:2 has no text field 'response'"):
        causal_sft.split_pairs(config, "train")


def test_a_hold_out_that_leaves_no_split_is_one_line(tmp_path):
    """One example with eval_fraction 0.1 held it out and trained on nothing (a TypeError followed); eval_fraction 0
    still held one example out."""
    config = _config(tmp_path, [{"prompt": "w1", "response": "w2"}])
    with pytest.raises(DataError, match=r"^data.train_files has 1 example\(s\): holding out data.eval_fraction=0.25"):
        causal_sft.split_pairs(config, "train")
    config.eval_fraction = 0.0
    with pytest.raises(ConfigError, match=r"^data.eval_fraction=0.0 must be in \(0, 1\) when data.eval_files is"):
        causal_sft.split_pairs(config, "eval")


def test_held_out_split_is_fixed_and_disjoint(tmp_path):
    rows = [{"prompt": f"w{i}", "response": f"w{i + 100}"} for i in range(20)]
    config = _config(tmp_path, rows)
    train, held = causal_sft.split_pairs(config, "train"), causal_sft.split_pairs(config, "eval")
    assert len(held) == 5 and not set(train) & set(held) and len(train) + len(held) == 20
    config.seed = 9
    assert causal_sft.split_pairs(config, "eval") == held


def test_train_batches_resume_exactly(tmp_path):
    rows = [{"prompt": f"w{i} w{i + 1}", "response": f"w{i + 200}"} for i in range(30)]
    config = _config(tmp_path, rows)
    tok = ToyTokenizer()
    make = lambda: causal_sft.create_dataset(config, tok, per_host_batch=4, seed=0, max_seq_len=8)[0]  # noqa: E731
    reference = PipelineIterator(make())
    expected = [next(reference) for _ in range(9)]
    it = PipelineIterator(make())
    for _ in range(4):
        next(it)
    it.save(tmp_path / "pos")
    resumed = PipelineIterator(make())
    resumed.restore(tmp_path / "pos")
    for want in expected[4:]:
        got = next(resumed)
        assert all(np.array_equal(got[k], want[k]) for k in want)
    fields = {"input_ids", "attention_mask", "segment_ids", "position_ids", "loss_weights"}
    assert set(expected[0]) == fields and expected[0]["position_ids"].dtype == np.int32
    np.testing.assert_array_equal(expected[0]["position_ids"], np.arange(8) * expected[0]["attention_mask"])


def test_eval_batches_count_every_row_once_on_every_host(tmp_path):
    """The 8 held-out rows: batches of 3 on one host (the last padded with an empty row); on 3 hosts (3/3/2 rows),
    one batch each; on 10 hosts, the last two hold no row and run one batch of padding, as the others do."""
    rows = [{"prompt": f"w{i} w{i + 1}", "response": f"w{i + 200}"} for i in range(30)]
    config = _config(tmp_path, rows)
    want = causal_sft.encode(causal_sft.split_pairs(config, "eval"), ToyTokenizer(), max_seq_len=8)[0]
    for process_count, per_host_batch, count in [(1, 3, 3), (3, 3, 1), (10, 1, 1)]:
        seen = []
        for index in range(process_count):
            batches, stats = causal_sft.create_eval_batches(
                config, ToyTokenizer(), per_host_batch=per_host_batch, max_seq_len=8, process_index=index,
                process_count=process_count,
            )  # fmt: skip
            assert stats.examples == 8 and len(batches) == count
            for b in batches:
                assert b["input_ids"].shape == (per_host_batch, 8) and b["loss_weights"].dtype == np.float32
                np.testing.assert_array_equal(b["segment_ids"], b["attention_mask"])
                np.testing.assert_array_equal(b["position_ids"], np.arange(8) * b["attention_mask"])
                seen += [r.tolist() for r, m in zip(b["input_ids"], b["attention_mask"]) if m.any()]
        assert sorted(seen) == sorted(want["input_ids"].tolist()), process_count
