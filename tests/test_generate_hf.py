"""inference/generate.py against transformers: greedy decoding of a GPT-2 that Hugging Face built and saved, imported
with `hf_gpt2.load_checkpoint`, gives the tokens of `GPT2LMHeadModel.generate(do_sample=False)`, token for token.

Our prompts go in one right-padded batch with `prompt_lengths`; each row is compared with Hugging Face run on that
prompt alone (a batch would need left padding there, which shifts its positions unless position ids are passed).
"""

import numpy as np
import pytest

from sslm_jax.inference import generate as gen
from sslm_jax.interop import hf_gpt2
from sslm_jax.models import gpt

NEW = 12
LENGTHS = (5, 11, 17)
SHAPE = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=64, bos_token_id=None, eos_token_id=None)


@pytest.fixture(scope="module")
def models(torch, tmp_path_factory):
    """(HF model in eval mode, our model, our params): random weights saved by HF, loaded by us."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SHAPE, attn_implementation="eager")).eval()
    with torch.no_grad():  # std 0.2 (HF's init is 0.02): logits far from uniform, so greedy has no near-ties
        for name, p in hf_model.named_parameters():
            is_scale = name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
            p.copy_(0.2 * torch.randn_like(p) + (1.0 if is_scale else 0.0))
    directory = tmp_path_factory.mktemp("hf_gpt2")
    hf_model.save_pretrained(directory, safe_serialization=True)
    config, params = hf_gpt2.load_checkpoint(directory)
    return hf_model, gpt.GPTLMHeadModel(config), params


def _prompts(lengths, seed=0):
    rs = np.random.RandomState(seed)
    return [rs.randint(0, SHAPE["vocab_size"], n).tolist() for n in lengths]


def _right_padded(prompts):
    batch = np.zeros((len(prompts), max(map(len, prompts))), np.int32)
    for row, prompt in zip(batch, prompts):
        row[: len(prompt)] = prompt
    return batch, np.array([len(p) for p in prompts])


def _hf_greedy(torch, hf_model, prompt, new, eos_id=None):
    """Hugging Face's new tokens for one prompt (fewer than `new` when it stopped at `eos_id`)."""
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.inference_mode():
        out = hf_model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new, pad_token_id=0,
            eos_token_id=eos_id,
        )  # fmt: skip
    return out[0, len(prompt) :].tolist()


def _ours(model, params, prompts, new, eos_id=None, pad_id=0):
    batch, lengths = _right_padded(prompts)
    out = gen.generate(
        model, params, batch, None, max_new_tokens=new, init_cache=gpt.init_cache, prompt_lengths=lengths,
        temperature=0.0, eos_id=eos_id, pad_id=pad_id,
    )  # fmt: skip
    return np.asarray(out.tokens), np.asarray(out.lengths)


@pytest.mark.torch
def test_greedy_equals_hf_generate_per_prompt(torch, models):
    hf_model, model, params = models
    prompts = _prompts(LENGTHS)
    tokens, lengths = _ours(model, params, prompts, NEW)
    assert lengths.tolist() == [NEW] * len(prompts)
    for row, prompt in zip(tokens, prompts):
        assert row.tolist() == _hf_greedy(torch, hf_model, prompt, NEW)
    assert len({tuple(row) for row in tokens}) == len(prompts), "prompts should lead to different continuations"


@pytest.mark.torch
def test_greedy_with_an_eos_that_occurs_equals_hf_generate(torch, models):
    hf_model, model, params = models
    prompts = _prompts(LENGTHS)
    greedy, _ = _ours(model, params, prompts, NEW)
    # The token row 0 produces 4th: row 0 stops there (or earlier, if it came before); other rows as it falls.
    eos = int(greedy[0, 3])
    pad = SHAPE["vocab_size"] + 7  # outside the vocabulary: shows where rows were padded, never fed to the model
    tokens, lengths = _ours(model, params, prompts, NEW, eos_id=eos, pad_id=pad)
    assert lengths[0] <= 4
    for row, length, prompt in zip(tokens, lengths, prompts):
        hf = _hf_greedy(torch, hf_model, prompt, NEW, eos_id=eos)
        assert row[:length].tolist() == hf  # so our row stopped where HF's did, at its first EOS
        assert (row[length:] == pad).all()


@pytest.mark.torch
def test_a_prompt_past_half_the_context_with_new_tokens_up_to_it(torch, models):
    """Prompt 40 + 24 new = the whole context of 64 (its bucket is 64: the cache may not be bucket + new long)."""
    hf_model, model, params = models
    prompts = _prompts((40, 7), seed=1)
    new = SHAPE["n_positions"] - 40
    tokens, _ = _ours(model, params, prompts, new)
    for row, prompt in zip(tokens, prompts):
        assert row.tolist() == _hf_greedy(torch, hf_model, prompt, new)
