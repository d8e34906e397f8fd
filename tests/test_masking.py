"""Masking ops: worked examples (eagerly and inside tf.data), exact greedy, and statistics over > 1M tokens."""

import numpy as np
import pytest
import tensorflow as tf

from sslm_jax.data import masking

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
SPECIAL = (PAD, CLS, SEP, MASK)
N_WORDS, N_PIECES = 600, 300  # vocabulary: reserved ids 0..103, then whole words, then "##" pieces
FIRST_WORD = 104
FIRST_PIECE = FIRST_WORD + N_WORDS
VOCAB = (
    ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + [f"w{i}" for i in range(N_WORDS)] + [f"##p{i}" for i in range(N_PIECES)]
)  # fmt: skip
IS_SPECIAL = np.isin(np.arange(len(VOCAB)), SPECIAL)


def in_dataset(fn, *args):
    """Runs fn on the (tensor) args inside a tf.data map, returns numpy results."""
    ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args)).map(lambda *a: fn(*a))
    return tf.nest.map_structure(lambda t: t.numpy(), next(iter(ds)))


def both_ways(fn, *args):
    eager = tf.nest.map_structure(lambda t: t.numpy(), fn(*[tf.convert_to_tensor(a) for a in args]))
    graph = in_dataset(fn, *args)
    tf.nest.map_structure(np.testing.assert_array_equal, eager, graph)
    return eager


# --- worked examples of each op -----------------------------------------------------------------------------


def test_candidate_mask_example():
    out = both_ways(
        lambda ids, am: masking.candidate_mask(ids, am, is_special=IS_SPECIAL),
        [[CLS, 107, 108, SEP, PAD]],
        [[1, 1, 1, 1, 0]],
    )
    np.testing.assert_array_equal(out, [[False, True, True, False, False]])


def test_word_starts_example():
    piece = FIRST_PIECE
    continuation = [tok.startswith("##") for tok in VOCAB]
    ids = [[CLS, 107, piece, 109, SEP], [CLS, piece, piece + 1, 110, SEP]]
    cands = [[False, True, True, True, False], [False, True, True, True, False]]
    out = both_ways(lambda i, c: masking.word_starts(i, c, continuation=continuation), ids, cands)
    # A "##" piece right after [CLS] (a word cut by packing) starts a word of its own.
    np.testing.assert_array_equal(out, [[False, True, False, True, False], [False, True, False, True, False]])


def test_num_to_predict_example():
    cands = np.zeros([3, 128], bool)
    cands[1, :3] = True
    cands[2, 1:127] = True
    out = both_ways(lambda c: masking.num_to_predict(c, rate=0.15, max_predictions=20), cands)
    np.testing.assert_array_equal(out, [0, 1, 19])
    out = both_ways(lambda c: masking.num_to_predict(c, rate=0.5, max_predictions=20), cands)
    np.testing.assert_array_equal(out, [0, 2, 20])  # round(1.5) = 2, capped at 20


def greedy_reference(lengths, num):
    taken, total = [], 0
    for length in lengths:
        ok = 0 < length and total + length <= num
        taken.append(ok)
        total += length if ok else 0
    return taken


def test_greedy_fill_equals_sequential_greedy():
    rng = np.random.default_rng(0)
    lengths = rng.choice([0, 1, 1, 2, 3, 5], size=[300, 24]).astype(np.int32)
    nums = rng.integers(0, 12, size=[300]).astype(np.int32)
    out = both_ways(masking._greedy_fill, lengths, nums)
    expected = [greedy_reference(lengths[i], nums[i]) for i in range(len(nums))]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(both_ways(masking._greedy_fill, [[2, 3, 1, 1]], [3]), [[True, False, True, False]])


def test_select_tokens_and_words_examples():
    # 64 copies of one row: each row draws its own random keys.
    cands = [[False, True, True, True, True]] * 64
    starts = [[False, True, False, True, True]] * 64
    seed = tf.constant([3, 4], tf.int64)
    out = both_ways(lambda c, n: masking.select_tokens(c, n, max_predictions=3, seed=seed), cands, [2] * 64)
    assert np.all(out.sum(1) == 2) and not out[:, 0].any() and out.any(0)[1:].all()
    out = both_ways(lambda c, st, n: masking.select_words(c, st, n, seed=seed), cands, starts, [2] * 64)
    rows = {tuple(r) for r in out.tolist()}
    assert rows == {(False, True, True, False, False), (False, False, False, True, True)}  # never half a word


def test_gather_predictions_example():
    out = both_ways(
        lambda ids, sel: masking.gather_predictions(ids, sel, max_predictions=3),
        [[CLS, 107, 108, 109, SEP]],
        [[False, True, False, True, False]],
    )
    positions, labels, weights = out
    np.testing.assert_array_equal(positions, [[1, 3, 0]])
    np.testing.assert_array_equal(labels, [[107, 109, 0]])
    np.testing.assert_array_equal(weights, [[1.0, 1.0, 0.0]])


def test_replace_predictions_example():
    pool = list(range(FIRST_WORD, len(VOCAB)))
    seed = tf.constant([1, 1], tf.int64)
    out = both_ways(
        lambda ids, pos, w: masking.replace_predictions(ids, pos, w, mask_id=MASK, replacement_ids=pool, seed=seed),
        [[CLS, 107, 108, SEP]] * 64,
        [[1, 2, 0]] * 64,
        [[1.0, 1.0, 0.0]] * 64,
    )
    assert np.all(out[:, 0] == CLS) and np.all(out[:, 3] == SEP)  # the padding prediction (position 0) changes nothing
    new, orig = out[:, 1:3], np.array([107, 108])
    kinds = {"mask" if t == MASK else "same" if t == o else "random" for t, o in zip(new.ravel(), np.tile(orig, 64))}
    assert kinds == {"mask", "same", "random"}


def test_masker_example_and_tf_data():
    masker = masking.Masker.from_vocab(VOCAB, special_ids=SPECIAL, mask_id=MASK, max_predictions=4, masking="word")
    ids = [[CLS, 107, FIRST_PIECE, 108, SEP, 109, 110, SEP], [CLS, 111, 112, SEP, 0, 0, 0, 0]]
    am = [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]]
    seed = tf.constant([0, 7], tf.int64)
    out = both_ways(lambda i, a: masker(i, a, seed=seed), ids, am)
    assert set(out) == {"input_ids", "masked_positions", "masked_ids", "masked_weights"}
    assert out["masked_positions"].shape == (2, 4) and out["masked_weights"].dtype == np.float32
    # 5 and 2 candidates at rate 0.15 -> round(0.75) = 1 and max(1, round(0.3)) = 1 prediction.
    np.testing.assert_array_equal(out["masked_weights"].sum(1), [1, 1])
    assert masker.replacement_ids[0] == FIRST_WORD  # no special or [unused] token is a random replacement


# --- statistics ------------------------------------------------------------------------------------------


def synthetic_batch(rng, rows, length=128, pieces=(0.6, 0.25, 0.15)):
    """Rows `[CLS] words [SEP] pad`: words of 1-3 pieces (with probabilities `pieces`), some [UNK]s, and inner
    [SEP]/[MASK] tokens (as in packed rows or text that writes "[MASK]"); also returns the word index of every slot
    (-1 outside words)."""
    ids = np.zeros([rows, length], np.int32)
    word = np.full([rows, length], -1)
    real = rng.integers(64, length - 1, size=rows)  # tokens between [CLS] and [SEP]
    for r in range(rows):
        sizes = rng.choice([1, 2, 3], p=pieces, size=length)
        index = np.repeat(np.arange(length), sizes)[: real[r]]  # word of each token
        first = np.concatenate([[True], index[1:] != index[:-1]])
        tokens = np.where(first, FIRST_WORD + rng.integers(N_WORDS, size=real[r]), FIRST_PIECE + rng.integers(N_PIECES, size=real[r]))
        tokens = np.where(first & (rng.random(real[r]) < 0.02), UNK, tokens)
        special = first & (rng.random(real[r]) < 0.03)  # a one-token special "word"
        special_word = np.isin(index, index[special])
        tokens = np.where(special_word, rng.choice([SEP, MASK], size=real[r]), tokens)
        keep = ~special_word | first  # a special replaces its whole word by one token
        tokens, index = tokens[keep], np.where(special_word, -1, index)[keep]
        ids[r, 0], ids[r, 1 : 1 + len(tokens)], ids[r, 1 + len(tokens)] = CLS, tokens, SEP
        word[r, 1 : 1 + len(tokens)] = index
    return ids, (ids != PAD).astype(np.int32), word


@pytest.mark.parametrize("whole_word", [False, True])
def test_masking_statistics(whole_word):
    rate, max_predictions, rows, batches = 0.15, 20, 1024, 12  # ~1.15M real tokens
    rng = np.random.default_rng(1)
    masker = masking.Masker.from_vocab(
        VOCAB,
        special_ids=SPECIAL,
        mask_id=MASK,
        rate=rate,
        max_predictions=max_predictions,
        masking="word" if whole_word else "token",
    )
    fn = tf.function(lambda i, a, s: masker(i, a, seed=s))
    n_candidates = n_selected = n_expected = 0
    n_mask = n_same = n_random = 0
    replacements = []
    for b in range(batches):
        ids, am, word = synthetic_batch(rng, rows)
        out = {k: v.numpy() for k, v in fn(ids, am, tf.constant([5, b], tf.int64)).items()}
        cand = (am == 1) & ~IS_SPECIAL[ids]
        n_candidates += cand.sum()
        w = out["masked_weights"] > 0
        pos = out["masked_positions"]
        assert np.all(pos[~w] == 0) and np.all(out["masked_ids"][~w] == 0)
        rows_idx = np.broadcast_to(np.arange(rows)[:, None], pos.shape)
        sel = np.zeros_like(cand)
        sel[rows_idx[w], pos[w]] = True
        assert sel.sum() == w.sum()  # positions are distinct
        # Never a special token or padding; labels are the original ids; increasing positions.
        assert np.all(cand[sel])
        np.testing.assert_array_equal(out["masked_ids"][w], ids[rows_idx[w], pos[w]])
        assert np.all(w[:, :-1] >= w[:, 1:])  # real predictions first, then padding
        assert np.all(np.diff(pos, axis=1)[w[:, 1:]] > 0)  # in increasing position order
        # Unselected positions are untouched.
        np.testing.assert_array_equal(out["input_ids"][~sel], ids[~sel])
        # Exact count per row (token units); whole words fill the count unless no remaining word fits.
        target = np.minimum(max_predictions, np.maximum(1, np.round(cand.sum(1) * rate))).astype(int)
        n_expected += target.sum()
        n_selected += sel.sum()
        if whole_word:
            assert np.all(sel.sum(1) <= target)
            # Every word is selected entirely or not at all.
            in_word = word >= 0
            key = (np.arange(rows)[:, None] * 1000 + word)[in_word]
            pieces = np.bincount(key, minlength=rows * 1000)
            chosen = np.bincount(key, weights=sel[in_word], minlength=rows * 1000)
            assert np.all((chosen == 0) | (chosen == pieces))
            assert np.all(sel[~in_word] == False)  # noqa: E712
        else:
            np.testing.assert_array_equal(sel.sum(1), target)
        new, orig = out["input_ids"][sel], ids[sel]
        n_mask += (new == MASK).sum()
        n_same += (new == orig).sum()
        random = (new != MASK) & (new != orig)
        n_random += random.sum()
        replacements.append(new[random])
    assert n_candidates > 1_000_000

    def within_3_sigma(count, total, p):
        sigma = np.sqrt(p * (1 - p) / total)
        assert abs(count / total - p) < 3 * sigma, (count / total, p, sigma)

    within_3_sigma(n_selected, n_candidates, rate)
    if whole_word:  # nearly every row is filled exactly
        assert n_selected >= 0.999 * n_expected
    pool = len(masker.replacement_ids)
    within_3_sigma(n_mask, n_selected, 0.8)
    within_3_sigma(n_same, n_selected, 0.1 + 0.1 / pool)  # a random token may equal the original
    within_3_sigma(n_random, n_selected, 0.1 * (1 - 1 / pool))
    replacements = np.concatenate(replacements)
    assert not np.any(IS_SPECIAL[replacements]) and replacements.min() >= FIRST_WORD  # no special, no [unused]
    # Replacements are uniform over the pool: chi-square within 5 sigma of its degrees of freedom.
    counts = np.bincount(replacements - FIRST_WORD, minlength=pool)
    expected = len(replacements) / pool
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert abs(chi2 - (pool - 1)) < 5 * np.sqrt(2 * (pool - 1))


def test_token_selection_is_uniform_over_positions():
    """Each candidate is equally likely to be chosen, wherever it sits in the row (3 sigma per position bin)."""
    masker = masking.Masker.from_vocab(VOCAB, special_ids=SPECIAL, mask_id=MASK, max_predictions=20)
    ids = np.full([4096, 128], FIRST_WORD, np.int32)
    ids[:, 0], ids[:, -1] = CLS, SEP
    am = np.ones_like(ids)
    hits = np.zeros(128)
    for b in range(4):
        out = masker(ids, am, seed=tf.constant([9, b], tf.int64))
        pos, w = out["masked_positions"].numpy(), out["masked_weights"].numpy() > 0
        hits += np.bincount(pos[w], minlength=128)
    p = 19 / 126
    bins = hits[1:127].reshape(6, 21).sum(1)
    trials = 4 * 4096 * 21
    sigma = np.sqrt(trials * p * (1 - p))
    assert np.all(np.abs(bins - trials * p) < 3 * sigma), bins
    assert hits[0] == 0 and hits[127] == 0


def test_masking_is_deterministic_per_seed():
    masker = masking.Masker.from_vocab(VOCAB, special_ids=SPECIAL, mask_id=MASK, masking="word")
    ids, am, _ = synthetic_batch(np.random.default_rng(3), 16)
    a = masker(ids, am, seed=tf.constant([1, 2], tf.int64))
    b = masker(ids, am, seed=tf.constant([1, 2], tf.int64))
    c = masker(ids, am, seed=tf.constant([1, 3], tf.int64))
    tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["masked_positions"], c["masked_positions"])


# --- span masking (SpanBERT) ------------------------------------------------------------------------------

SPAN_PIECES = (0.8, 0.15, 0.05)  # pieces per word: 1.25 on average, 20 % of the tokens are "##" pieces


def test_span_length_probabilities():
    probs = masking.span_length_probabilities()
    expected = 0.2 * 0.8 ** np.arange(10)
    np.testing.assert_allclose(probs, expected / expected.sum())
    assert abs((np.arange(1, 11) * probs).sum() - 3.797) < 1e-3  # SpanBERT's mean span length, 3.8 words


def test_select_spans_example():
    # Words {1, 2}, {3}, {4}, {5}; 3 positions per row, 64 copies of the row, each drawing its own spans.
    cands = [[False, True, True, True, True, True, False]] * 64
    starts = [[False, True, False, True, True, True, False]] * 64
    seed = tf.constant([3, 4], tf.int64)
    span, drawn = both_ways(
        lambda c, st, n: masking.select_spans(c, st, n, max_spans=3, seed=seed), cands, starts, [3] * 64
    )
    selected = span > 0
    assert np.all(selected.sum(1) == 3) and not selected[:, [0, 6]].any()
    assert np.all(selected[:, 1] == selected[:, 2])  # never half a word
    assert {tuple(r) for r in selected.tolist()} == {
        (False, True, True, True, False, False, False),
        (False, False, False, True, True, True, False),
        (False, True, True, False, False, True, False),
        (False, True, True, False, True, False, False),
    }
    n_spans = span.max(1)
    assert np.all((drawn > 0).sum(1) == n_spans) and np.all((drawn > 0) == (np.arange(3) < n_spans[:, None]))
    # A span's positions are contiguous; its real length in words never exceeds the drawn one.
    words = np.array([0, 1, 1, 2, 3, 4, 0])
    for row, lengths in zip(span, drawn):
        for k in range(1, row.max() + 1):
            where = np.flatnonzero(row == k)
            assert where[-1] - where[0] + 1 == len(where)
            assert len(set(words[where])) <= lengths[k - 1]


def test_span_masker_example_and_tf_data():
    """All tokens of a span get the same treatment; random tokens are drawn per token."""
    masker = masking.Masker.from_vocab(VOCAB, special_ids=SPECIAL, mask_id=MASK, rate=0.5, masking="span")
    row = [CLS] + list(range(FIRST_WORD, FIRST_WORD + 30)) + [SEP]
    ids, am = [row] * 256, [[1] * len(row)] * 256
    out = both_ways(lambda i, a: masker(i, a, seed=tf.constant([0, 7], tf.int64)), ids, am)
    selected, span, _ = (t.numpy() for t in masker.select(ids, am, seed=tf.constant([0, 7], tf.int64)))
    np.testing.assert_array_equal(out["masked_weights"].sum(1), 15)
    np.testing.assert_array_equal(out["input_ids"][~selected], np.asarray(ids)[~selected])
    kinds = set()
    for r in range(len(ids)):
        for k in range(1, span[r].max() + 1):
            new, orig = out["input_ids"][r][span[r] == k], np.asarray(row)[span[r] == k]
            kind = "mask" if np.all(new == MASK) else "same" if np.all(new == orig) else "random"
            if kind == "random":
                assert not np.any(new == MASK)
                kinds.add("random-mixed" if len(new) > 2 and len(set(new.tolist())) > 1 else "random")
            kinds.add(kind)
    assert kinds >= {"mask", "same", "random", "random-mixed"}


def span_statistics(masker, batches, *, rows, pieces, seed, length=128):
    """Masks `batches` synthetic batches; checks every invariant of span masking on each; returns counts."""
    rng = np.random.default_rng(seed)
    fn = tf.function(lambda i, a, s: (masker(i, a, seed=s), masker.select(i, a, seed=s)))
    stats = dict(candidates=0, selected=0, target=0, full_rows=0, rows=0, mask=0, same=0, random=0, same_expected=0.0)
    drawn_lengths, real_lengths = [], []
    pool = len(masker.replacement_ids)
    max_spans = masker.max_predictions + 1
    for b in range(batches):
        ids, am, word = synthetic_batch(rng, rows, length, pieces=pieces)
        out, (selected, span, drawn) = fn(ids, am, tf.constant([seed, b], tf.int64))
        out = {k: v.numpy() for k, v in out.items()}
        selected, span, drawn = selected.numpy(), span.numpy(), drawn.numpy()
        cand = (am == 1) & ~IS_SPECIAL[ids]
        w, pos = out["masked_weights"] > 0, out["masked_positions"]
        rows_idx = np.broadcast_to(np.arange(rows)[:, None], pos.shape)
        sel = np.zeros_like(cand)
        sel[rows_idx[w], pos[w]] = True
        np.testing.assert_array_equal(sel, selected)  # `select` shows what `__call__` predicts
        np.testing.assert_array_equal(sel, span > 0)
        assert np.all(cand[sel])  # never a special token or padding
        np.testing.assert_array_equal(out["masked_ids"][w], ids[rows_idx[w], pos[w]])
        np.testing.assert_array_equal(out["input_ids"][~sel], ids[~sel])
        # num_to_predict's count, in float32 as there (0.15 * 390 rounds to 59 in float32, to 58 in float64).
        want = np.round(cand.sum(1).astype(np.float32) * np.float32(masker.rate))
        target = np.minimum(masker.max_predictions, np.maximum(1, want)).astype(int)
        assert np.all(sel.sum(1) <= target) and np.all(w.sum(1) == sel.sum(1))
        stats["candidates"] += cand.sum()
        stats["selected"] += sel.sum()
        stats["target"] += target.sum()
        stats["full_rows"] += (sel.sum(1) == target).sum()
        stats["rows"] += rows
        # Per span (row r, k-th span): its positions, tokens, words; key = r * max_spans + k.
        key = (np.arange(rows)[:, None] * max_spans + span)[sel]
        position = np.broadcast_to(np.arange(length), sel.shape)[sel]
        n_spans = max_spans * rows
        size = np.bincount(key, minlength=n_spans)
        begin = np.full(n_spans, length)
        np.minimum.at(begin, key, position)
        end = np.full(n_spans, -1)
        np.maximum.at(end, key, position)
        exists = size > 0
        # Contiguous positions, all candidates: a span never crosses a special token or padding.
        np.testing.assert_array_equal((end - begin + 1)[exists], size[exists])
        # Whole words: each word entirely in one span or in none.
        in_word = word >= 0
        word_key = (np.arange(rows)[:, None] * 1000 + word)[in_word]
        word_pieces = np.bincount(word_key, minlength=rows * 1000)
        chosen = np.bincount(word_key, weights=sel[in_word], minlength=rows * 1000)
        assert np.all((chosen == 0) | (chosen == word_pieces)) and not sel[~in_word].any()
        first_piece = np.ones_like(sel)
        first_piece[:, 1:] = word[:, 1:] != word[:, :-1]
        words = np.bincount(key, weights=first_piece[sel], minlength=n_spans).astype(int)
        # The k-th span exists iff a k-th length was drawn; real length <= drawn length.
        drawn_full = np.concatenate([np.zeros([rows, 1], int), drawn], 1).reshape(-1)
        np.testing.assert_array_equal(exists, drawn_full > 0)
        assert np.all(words[exists] <= drawn_full[exists]) and np.all(words[exists] >= 1)
        # A span shorter than drawn was cut: the word after it did not fit in the budget left after the span, or
        # it was no free candidate then (a special token, padding, or an earlier span).
        rows_of = np.arange(n_spans) // max_spans
        k_of = np.arange(n_spans) % max_spans
        tokens_by_k = size.reshape(rows, max_spans)
        left_after = target[rows_of] - np.cumsum(tokens_by_k, axis=1).reshape(-1)
        short = np.flatnonzero(exists & (words < drawn_full))
        after = end[short] + 1
        inside = after < length
        after = np.minimum(after, length - 1)
        r = rows_of[short]
        next_free = inside & cand[r, after] & ((span[r, after] == 0) | (span[r, after] > k_of[short]))
        next_pieces = word_pieces[r * 1000 + np.maximum(word[r, after], 0)]
        assert np.all(~next_free | (next_pieces > left_after[short]))
        drawn_lengths.append(drawn_full[exists])
        real_lengths.append(words[exists])
        # 80/10/10 per span: every token of a span [MASK], or every one unchanged, or random (no [MASK]).
        new, orig = out["input_ids"][sel], ids[sel]
        is_mask = np.bincount(key, weights=new == MASK, minlength=n_spans)[exists]
        is_same = np.bincount(key, weights=new == orig, minlength=n_spans)[exists]
        all_mask, all_same = is_mask == size[exists], is_same == size[exists]
        assert np.all(all_mask | (is_mask == 0))
        stats["mask"] += all_mask.sum()
        stats["same"] += all_same.sum()
        stats["random"] += (~all_mask & ~all_same).sum()
        stats["same_expected"] += (0.1 + 0.1 * float(pool) ** -size[exists].astype(float)).sum()
    stats["drawn"], stats["real"] = np.concatenate(drawn_lengths), np.concatenate(real_lengths)
    return stats


def test_span_masking_statistics():
    """> 1M tokens of WordPiece-like rows (20 % "##" pieces): 15 % masked, span lengths, per-span 80/10/10."""
    rate, max_predictions = 0.15, 20
    masker = masking.Masker.from_vocab(
        VOCAB, special_ids=SPECIAL, mask_id=MASK, rate=rate, max_predictions=max_predictions, masking="span"
    )
    stats = span_statistics(masker, 12, rows=1024, pieces=SPAN_PIECES, seed=6)
    assert stats["candidates"] > 1_000_000

    def within_3_sigma(count, total, p):
        sigma = np.sqrt(p * (1 - p) / total)
        assert abs(count / total - p) < 3 * sigma, (count / total, p, sigma)

    within_3_sigma(stats["selected"], stats["candidates"], rate)
    assert stats["full_rows"] >= 0.999 * stats["rows"]  # rows get exactly their count, as with token masking
    # Span lengths in words: the drawn lengths follow the truncated geometric, per length within 3 sigma, and a
    # chi-square (9 degrees of freedom) below its 0.1 % tail.
    drawn, real = stats["drawn"], stats["real"]
    probs = masking.span_length_probabilities()
    counts = np.bincount(drawn, minlength=11)[1:]
    for length, (count, p) in enumerate(zip(counts, probs), start=1):
        within_3_sigma(count, len(drawn), p)
    chi2 = ((counts - len(drawn) * probs) ** 2 / (len(drawn) * probs)).sum()
    assert chi2 < 27.88, chi2
    # Real lengths are drawn ones, but for spans cut by the row's budget (about one per row).
    cut = (real < drawn).sum()
    assert cut < stats["rows"], (cut, stats["rows"])
    n_spans = len(drawn)
    within_3_sigma(stats["mask"], n_spans, 0.8)
    within_3_sigma(stats["same"], n_spans, stats["same_expected"] / n_spans)
    within_3_sigma(stats["random"], n_spans, 1 - 0.8 - stats["same_expected"] / n_spans)
    real_counts = np.bincount(real, minlength=11)[1:]
    print(
        f"span masking: {stats['candidates']:,} candidates, rate {stats['selected'] / stats['candidates']:.5f}, "
        f"{n_spans:,} spans, drawn mean {drawn.mean():.3f} words, real mean {real.mean():.3f}, {cut:,} cut; "
        f"per length: drawn {np.round(counts / n_spans, 4).tolist()}, "
        f"real {np.round(real_counts / n_spans, 4).tolist()},"
        f" expected {np.round(probs, 4).tolist()}; chi2 {chi2:.1f}; spans [MASK] {stats['mask'] / n_spans:.4f}, "
        f"same {stats['same'] / n_spans:.4f}, random {stats['random'] / n_spans:.4f}"
    )


def test_span_masking_is_deterministic_per_seed():
    masker = masking.Masker.from_vocab(VOCAB, special_ids=SPECIAL, mask_id=MASK, masking="span")
    ids, am, _ = synthetic_batch(np.random.default_rng(3), 64, pieces=SPAN_PIECES)  # > 32 rows: see select_spans
    a = both_ways(lambda i, m: masker(i, m, seed=tf.constant([1, 2], tf.int64)), ids, am)
    b = masker(ids, am, seed=tf.constant([1, 2], tf.int64))
    c = masker(ids, am, seed=tf.constant([1, 3], tf.int64))
    tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["masked_positions"], c["masked_positions"])


# --- config.data.masking: validation, and configs written before it existed ---------------------------------


def data_settings(**fields):
    from configs import base

    c = base.get_config().data
    c.update(fields)
    return c


BPE_REFUSED = r"^config\.data\.tokenizer='bpe': masked-LM pretraining needs BERT's \[CLS\], \[SEP\] and \[MASK\]"
REPLACED = r"^config\.data\.whole_word_masking was replaced by config\.data\.masking='word' \(False: 'token'\)"


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(masking="whole"), r"^config\.data\.masking='whole' is unknown; use one of token, word, span$"),
        (dict(masking="span", tokenizer="bpe"), BPE_REFUSED),
        (dict(masking="token", tokenizer="bpe"), BPE_REFUSED),  # BPE has no [CLS]/[SEP]/[MASK] (was a traceback)
        (dict(whole_word_masking=True), REPLACED),
        (dict(whole_word_masking=False), REPLACED),
    ],
)
def test_masking_settings_are_one_line_config_errors(fields, message):
    from sslm_jax.data import pretraining
    from sslm_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as e:
        pretraining.validate_settings(data_settings(**fields), max_position_embeddings=512)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="masking='whole' is unknown"):
        masking.Masker.from_vocab(VOCAB, special_ids=SPECIAL, mask_id=MASK, masking="whole")


def test_replaced_field_on_the_command_line_names_its_replacement():
    """`--config.data.whole_word_masking=True` fails as an unknown field of the locked config (config_flags raises a
    KeyError); the CLI's one line says what replaced it. Other unknown fields keep their message."""
    from sslm_jax import main

    argv = ["sslm", "pretrain", "--config=configs/bert_demo.py", "--config.data.whole_word_masking=True"]
    message = main._unknown_field_message(KeyError("'whole_word_masking'"), argv)
    assert message == (
        "--config.data.whole_word_masking: data.whole_word_masking was replaced by data.masking='word' "
        "(False: 'token') (every field: configs/base.py)"
    )
    argv = ["sslm", "pretrain", "--config=configs/bert_demo.py", "--config.data.whole_word_maskin=True"]
    message = main._unknown_field_message(KeyError("'whole_word_maskin'"), argv)
    assert message == (
        "--config.data.whole_word_maskin: the config has no field 'whole_word_maskin' (every field: configs/base.py)"
    )


@pytest.mark.parametrize("old, new", [(True, "word"), (False, "token")])
def test_checkpoint_configs_from_before_masking_are_upgraded(tmp_path, old, new):
    import json

    from sslm_jax.checkpoints import layout

    saved = data_settings().to_dict()
    del saved["masking"]
    saved["whole_word_masking"] = old
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(json.dumps({"task": "pretrain", "data": saved}))
    data = layout.load_config(tmp_path).data
    assert data.masking == new and "whole_word_masking" not in data
    from sslm_jax.data import pretraining

    pretraining.validate_settings(data, max_position_embeddings=512)  # reads like a config of today
