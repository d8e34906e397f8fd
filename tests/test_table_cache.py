"""The on-disk table cache: computed once, read back verified, recomputed when damaged, harmless when unwritable."""

import logging
import os

import numpy as np
import pytest
import tokenizers

from sslm_jax.data import table_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class Counter:
    def __init__(self, value=7):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return {"values": np.arange(10, dtype=np.int32) * self.value, "flags": np.array([1, 0], np.uint8)}


def test_computed_once_then_read_back(cache):
    compute = Counter()
    first = table_cache.cached_arrays("t", {"lower_case": True}, compute)
    second = table_cache.cached_arrays("t", {"lower_case": True}, compute)
    assert compute.calls == 1
    assert second.keys() == first.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    assert second["values"].dtype == np.int32 and len(list(cache.glob("t-*.npz"))) == 1


def test_the_key_separates_arguments_and_library_versions(cache, monkeypatch):
    compute = Counter()
    table_cache.cached_arrays("t", {"lower_case": True}, compute)
    table_cache.cached_arrays("t", {"lower_case": False}, compute)
    monkeypatch.setattr(tokenizers, "__version__", "0.0.0-other")
    table_cache.cached_arrays("t", {"lower_case": True}, compute)
    assert compute.calls == 3 and len(list(cache.glob("t-*.npz"))) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip", "other_key"])
def test_a_damaged_file_is_recomputed_and_replaced(cache, caplog, damage):
    table_cache.cached_arrays("t", {}, Counter())
    (path,) = cache.glob("t-*.npz")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # a valid npz whose arrays no longer match their digest
        arrays = dict(np.load(path))
        arrays["values"] = arrays["values"] + 1
        np.savez(path, **arrays)  # the name ends in .npz: written in place
    else:  # a verified table of another key, renamed onto this key's name
        table_cache.cached_arrays("u", {}, Counter(value=3))
        (other,) = cache.glob("u-*.npz")
        os.replace(other, path)
    compute = Counter()
    with caplog.at_level(logging.WARNING):
        got = table_cache.cached_arrays("t", {}, compute)
    assert compute.calls == 1 and np.array_equal(got["values"], np.arange(10) * 7)
    assert "recomputing" in caplog.text
    compute_again = Counter()
    table_cache.cached_arrays("t", {}, compute_again)
    assert compute_again.calls == 0  # the replacement is valid


def test_an_unwritable_cache_still_returns_the_table(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SSLM_CACHE_DIR", str(blocker / "cache"))
    compute = Counter()
    with caplog.at_level(logging.WARNING):
        got = table_cache.cached_arrays("t", {}, compute)
    assert compute.calls == 1 and np.array_equal(got["values"], np.arange(10) * 7)
    assert "SSLM_CACHE_DIR" in caplog.text


def test_default_folder_is_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SSLM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert table_cache.cache_dir() == tmp_path / "sslm_jax"


def test_the_pre_tokenizer_classes_read_back_equal_the_computed_ones(cache):
    from sslm_jax.data import tokenizer

    computed = tokenizer._compute_pre_tokenizer_classes()
    tokenizer._pre_tokenizer_classes.cache_clear()
    try:
        first = tokenizer._pre_tokenizer_classes()  # computes and writes
        tokenizer._pre_tokenizer_classes.cache_clear()
        second = tokenizer._pre_tokenizer_classes()  # reads back
    finally:
        tokenizer._pre_tokenizer_classes.cache_clear()
    assert len(list(cache.glob("bert_pre_tokenizer_classes-*.npz"))) == 1
    assert first == second and second.whitespace == frozenset(map(chr, computed["whitespace"].tolist()))
    assert second.punctuation == frozenset(map(chr, computed["punctuation"].tolist()))
    assert {" ", "\t", "\n", "\u3000"} <= second.whitespace and {",", ".", "$", "\u3001"} <= second.punctuation
    assert not {"a", "\u4e2d", "\u2603"} & (second.whitespace | second.punctuation)
