"""`model.pooling`: a mean-pooled classifier reads the average of the encoder's real tokens, padding-invariant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.models import bert, electra, layers

IDS = jnp.array([[2, 5, 6, 9, 3, 0, 0], [2, 7, 3, 0, 0, 0, 0]])
MASK = (IDS > 0).astype(jnp.int32)


def _classifier(module, config_cls, pooling):
    config = config_cls.from_size("tiny", vocab_size=40, pooling=pooling)
    model = module.FAMILY.model(config, "classification", num_labels=3)
    return config, model, bert.init_params(model, jax.random.key(0))


def test_bert_mean_pooling_is_the_masked_mean_of_the_encoder_without_a_pooler():
    config, model, params = _classifier(bert, bert.BertConfig, "mean")
    assert "pooler" not in params["bert"]
    hidden, _ = bert.BertModel(config, add_pooling_layer=False).apply({"params": params["bert"]}, IDS, MASK)
    mask = np.asarray(MASK, np.float32)[..., None]
    mean = (np.asarray(hidden) * mask).sum(1) / mask.sum(1)
    expected = mean @ np.asarray(params["classifier"]["kernel"]) + np.asarray(params["classifier"]["bias"])
    logits = model.apply({"params": params}, IDS, attention_mask=MASK).logits
    np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize("module,config_cls", [(bert, bert.BertConfig), (electra, electra.ElectraConfig)])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooled_logits_ignore_padding(module, config_cls, pooling):
    _, model, params = _classifier(module, config_cls, pooling)
    logits = model.apply({"params": params}, IDS, attention_mask=MASK).logits
    padded = jnp.pad(IDS, ((0, 0), (0, 5)))
    again = model.apply({"params": params}, padded, attention_mask=(padded > 0).astype(jnp.int32)).logits
    np.testing.assert_allclose(logits, again, atol=1e-5)


def test_mean_and_cls_differ_and_unknown_pooling_is_refused():
    hidden = jnp.arange(24, dtype=jnp.float32).reshape(2, 3, 4)
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(layers.POOLINGS["cls"](hidden, mask), hidden[:, 0])
    np.testing.assert_allclose(layers.POOLINGS["mean"](hidden, mask), [hidden[0, :2].mean(0), hidden[1, 0]])
    with pytest.raises(ValueError, match="pooling='max' is not one of 'cls', 'mean'"):
        bert.BertConfig(pooling="max")
