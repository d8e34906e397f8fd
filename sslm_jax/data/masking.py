"""Masked-language-model masking of a whole batch, in-graph, vectorised and with stateless randomness.

BERT's recipe (google-research/bert `create_masked_lm_predictions`), computed on a dense `[B, L]` batch:

1. candidates: real (attention_mask 1) tokens that are not special (`special_ids`);
2. per row, `num = min(max_predictions, max(1, round(rate * n_candidates)))` (0 for rows without candidates):
   an exact target, so every row aims at its 15 % (BERT rounds over the whole sequence; we count non-special
   tokens); "token" masking always meets it exactly;
3. candidate units (`masking`: "token"s, or whole "word"s: a piece plus the "##" continuation pieces after it)
   are taken in a random order, each accepted if it still fits in `num` (a too-long word is skipped and the next
   one tried, as BERT does, so a short row whose words are all longer than `num` pieces gets no prediction:
   68 of 1,280 rows at max_seq_len 8 on WikiText-2 with a 1,500-token vocabulary); or, for "span" (SpanBERT,
   Joshi et al. 2020), runs of whole words with geometric lengths are added until `num` positions are chosen
   (`select_spans`: the budget rule is there);
4. each selected position becomes [MASK] with probability 0.8, a random non-special token with 0.1, and stays
   unchanged with 0.1 ("span": one draw per span, so all its tokens get the same treatment, each random one
   drawn on its own). Unlike BERT, random tokens never are special or "[unused]" tokens.

Why not tensorflow-text's `RandomItemSelector` / `MaskValuesChooser`: they draw from TF's stateful random ops
(`tf.random.shuffle`, `tf.random.uniform`), which makes a tf.data iterator neither reproducible from a seed nor
exactly resumable, and the selector loops over rows with `map_fn`. Here every random draw is a stateless op keyed
by a `[2]` seed that the pipeline derives from (seed, batch index), so masks are re-drawn for every batch of
every epoch and an iterator restored from a checkpoint draws exactly what an uninterrupted one draws.
`tests/test_masking.py` checks the statistics over more than a million tokens.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from sslm_jax.data.tf_setup import tf

# Tokens that are control symbols of the vocabulary ([PAD], [unused7], [CLS], ...) are never random replacements.
_CONTROL_TOKEN = re.compile(r"^\[[^\[\]]+\]$")

# The masking units (`config.data.masking`): single tokens, whole words (a piece and its "##" pieces), or spans of
# whole words.
MASKING = ("token", "word", "span")

# SpanBERT's span lengths in words: geometric with p = 0.2, truncated at 10 words and renormalised as SpanBERT's
# code does (`span_length_probabilities`; mean 3.79 words. Clipping, all mass above 10 put on 10, would give 4.46).
SPAN_P, SPAN_MAX_WORDS = 0.2, 10

# Offsets folded into the batch seed, one per independent random draw.
_SELECT, _ACTION, _RANDOM_TOKEN = 0, 1, 2
# ... and into the selection seed, for spans.
_SPAN_LENGTH, _SPAN_START = 0, 1


@dataclasses.dataclass(frozen=True)
class Masker:
    """What masking needs to know about the vocabulary, plus the masking settings.

    Build it with `Masker.from_vocab(...)` (or `from_tokenizer`), then call it on a batch:

        masker = Masker.from_vocab(vocab, special_ids=(0, 100, 101, 102, 103), mask_id=103, rate=0.15,
                                   max_predictions=20, masking="word")
        out = masker(input_ids, attention_mask, seed=tf.constant([0, 7], tf.int64))
        out["input_ids"], out["masked_positions"], out["masked_ids"], out["masked_weights"]
    """

    special_ids: tuple[int, ...]  # never selected
    mask_id: int
    replacement_ids: tuple[int, ...]  # the pool of random replacement tokens (no special or control tokens)
    vocab_size: int
    continuation: tuple[bool, ...] | None  # per vocabulary id: is a "##" piece (masking by words), else None
    masking: str = "token"  # one of MASKING: what a masking unit is
    rate: float = 0.15
    max_predictions: int = 20

    @classmethod
    def from_vocab(
        cls,
        vocab: Sequence[str],
        *,
        special_ids: Sequence[int],
        mask_id: int,
        rate: float = 0.15,
        max_predictions: int = 20,
        masking: str = "token",
    ) -> Masker:
        """Derives the replacement pool and the "##" continuation flags from the vocabulary list (id = index)."""
        if masking not in MASKING:
            raise ValueError(f"masking={masking!r} is unknown; use one of {', '.join(MASKING)}")
        special = {int(i) for i in special_ids} | {int(mask_id)}
        pool = tuple(i for i, tok in enumerate(vocab) if i not in special and not _CONTROL_TOKEN.match(tok))
        if not pool:
            raise ValueError("the vocabulary has no ordinary tokens to use as random replacements")
        continuation = tuple(tok.startswith("##") for tok in vocab) if masking != "token" else None
        return cls(
            special_ids=tuple(sorted(special)),
            mask_id=int(mask_id),
            replacement_ids=pool,
            vocab_size=len(vocab),
            continuation=continuation,
            masking=masking,
            rate=float(rate),
            max_predictions=int(max_predictions),
        )

    @classmethod
    def from_tokenizer(cls, tokenizer, *, rate: float, max_predictions: int, masking: str) -> Masker:
        """`from_vocab` for a `sslm_jax.data.tokenizer.WordPieceTokenizer` (its `vocab`, `special_ids`, `mask_id`)."""
        return cls.from_vocab(
            tokenizer.vocab,
            special_ids=tokenizer.special_ids,
            mask_id=tokenizer.mask_id,
            rate=rate,
            max_predictions=max_predictions,
            masking=masking,
        )

    def __call__(self, input_ids: tf.Tensor, attention_mask: tf.Tensor, *, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Masks a batch. input_ids/attention_mask: int [B, L]; seed: int [2]. Returns the four MLM fields."""
        input_ids = tf.convert_to_tensor(input_ids, tf.int32)
        selected, span, _ = self.select(input_ids, attention_mask, seed=seed)
        positions, labels, weights = gather_predictions(input_ids, selected, max_predictions=self.max_predictions)
        # Spans: the predictions of one span share one 80/10/10 draw (span k uses draw k - 1).
        units = None if span is None else tf.maximum(tf.gather(span, positions, batch_dims=1) - 1, 0)
        masked = replace_predictions(
            input_ids,
            positions,
            weights,
            mask_id=self.mask_id,
            replacement_ids=self.replacement_ids,
            seed=seed,
            units=units,
        )
        return {"input_ids": masked, "masked_positions": positions, "masked_ids": labels, "masked_weights": weights}

    def select(
        self, input_ids: tf.Tensor, attention_mask: tf.Tensor, *, seed: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
        """The positions that `__call__` with the same seed predicts: (selected bool [B, L], span, drawn).

        span and drawn are `select_spans`'s outputs (which span each position belongs to; the lengths drawn) for
        masking="span", None otherwise.
        """
        input_ids = tf.convert_to_tensor(input_ids, tf.int32)
        is_special = np.zeros([self.vocab_size], bool)
        is_special[list(self.special_ids)] = True
        candidates = candidate_mask(input_ids, attention_mask, is_special=is_special)
        num = num_to_predict(candidates, rate=self.rate, max_predictions=self.max_predictions)
        select_seed = tf.random.experimental.stateless_fold_in(seed, _SELECT)
        if self.masking == "token":
            return select_tokens(candidates, num, max_predictions=self.max_predictions, seed=select_seed), None, None
        starts = word_starts(input_ids, candidates, continuation=self.continuation)
        if self.masking == "word":
            return select_words(candidates, starts, num, seed=select_seed), None, None
        span, drawn = select_spans(candidates, starts, num, max_spans=self.max_predictions, seed=select_seed)
        return span > 0, span, drawn


def candidate_mask(input_ids: tf.Tensor, attention_mask: tf.Tensor, *, is_special: Sequence[bool]) -> tf.Tensor:
    """bool [B, L]: the positions that may be selected (real and not special); is_special: per vocabulary id.

    Example: input_ids=[[101, 7, 8, 102, 0]], attention_mask=[[1, 1, 1, 1, 0]], is_special true at 0, 101, 102,
    103 -> [[False, True, True, False, False]].
    """
    special = tf.gather(tf.constant(np.asarray(is_special, bool)), input_ids)
    return tf.logical_and(tf.cast(attention_mask, tf.bool), tf.logical_not(special))


def word_starts(input_ids: tf.Tensor, candidates: tf.Tensor, *, continuation: Sequence[bool]) -> tf.Tensor:
    """bool [B, L]: candidates that begin a word: not a "##" piece, or a "##" piece after a non-candidate.

    (A "##" piece right after [CLS] or padding, e.g. where packing cut a word, is a word of its own.)
    Example, vocab ids 7 = "play", 8 = "##ing", 9 = "go": input_ids=[[101, 7, 8, 9, 102]],
    candidates=[[F, T, T, T, F]] -> [[False, True, False, True, False]].
    """
    is_piece = tf.gather(tf.constant(np.asarray(continuation, bool)), input_ids)
    prev_candidate = tf.pad(candidates[:, :-1], [[0, 0], [1, 0]])
    return tf.logical_and(candidates, tf.logical_not(tf.logical_and(is_piece, prev_candidate)))


def num_to_predict(candidates: tf.Tensor, *, rate: float, max_predictions: int) -> tf.Tensor:
    """int32 [B]: how many positions to select per row, min(max_predictions, max(1, round(rate * n))), 0 if n = 0.

    Example: rows with 0, 3 and 126 candidates, rate 0.15, max_predictions 20 -> [0, 1, 19].
    """
    n = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)
    want = tf.cast(tf.round(tf.cast(n, tf.float32) * rate), tf.int32)
    return tf.minimum(tf.minimum(tf.maximum(want, 1), max_predictions), n)


def select_tokens(candidates: tf.Tensor, num: tf.Tensor, *, max_predictions: int, seed: tf.Tensor) -> tf.Tensor:
    """bool [B, L]: `num` candidates per row, uniformly at random (num <= max_predictions).

    Example: candidates=[[F, T, T, T, F]], num=[2] -> e.g. [[F, T, F, T, F]].
    """
    keys = tf.random.stateless_uniform(tf.shape(candidates), seed=seed)
    # The max_predictions largest keys among the candidates; the first num of them are chosen.
    values, index = tf.math.top_k(tf.where(candidates, keys, -1.0), k=max_predictions, sorted=True)
    chosen = tf.logical_and(tf.range(max_predictions)[None, :] < num[:, None], values >= 0.0)
    return _scatter_rows(index, chosen, tf.shape(candidates))


def select_words(candidates: tf.Tensor, starts: tf.Tensor, num: tf.Tensor, *, seed: tf.Tensor) -> tf.Tensor:
    """bool [B, L]: whole words (a start and the candidates that follow it up to the next start) chosen at random.

    Words are visited in a random order and accepted while they fit in `num` (BERT's greedy: a word that would
    overflow is skipped, later shorter ones may still fit). Example: candidates=[[F, T, T, T, T]],
    starts=[[F, T, F, T, T]] (words {1, 2}, {3}, {4}), num=[2] -> e.g. [[F, T, T, F, F]] or [[F, F, F, T, T]],
    never a word cut in half.
    """
    batch, length = tf.shape(candidates)[0], tf.shape(candidates)[1]
    # Word index of every position (0-based; positions before the first start get -1, non-candidates are ignored).
    word = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1
    n_words = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)
    in_word = tf.logical_and(candidates, word >= 0)
    row_offset = tf.range(batch)[:, None] * length
    word_len = tf.math.unsorted_segment_sum(
        tf.reshape(tf.cast(in_word, tf.int32), [-1]),
        tf.reshape(tf.where(in_word, word + row_offset, 0), [-1]),
        batch * length,
    )
    word_len = tf.reshape(word_len, [batch, length])  # [b, w]: pieces of word w (0 beyond n_words)
    # A random visiting order of the words: sort random keys, empty word slots last.
    keys = tf.random.stateless_uniform([batch, length], seed=seed)
    keys = tf.where(tf.range(length)[None, :] < n_words[:, None], keys, 2.0)
    order = tf.argsort(keys, axis=1, stable=True)
    accepted = _greedy_fill(tf.gather(word_len, order, batch_dims=1), num)  # [b, k]: k-th visited word taken
    word_accepted = _scatter_rows(order, accepted, tf.shape(candidates))
    return tf.logical_and(in_word, tf.gather(word_accepted, tf.maximum(word, 0), batch_dims=1))


def span_length_probabilities(p: float = SPAN_P, max_words: int = SPAN_MAX_WORDS) -> np.ndarray:
    """float64 [max_words]: P(a span has k words), k = 1..max_words: p (1 - p)^(k - 1), renormalised over 1..max_words.

    Example: p=0.2, max_words=10 -> [0.224, 0.179, 0.143, 0.115, 0.092, 0.073, 0.059, 0.047, 0.038, 0.030] (mean 3.79).
    """
    weights = p * (1 - p) ** np.arange(max_words)
    return weights / weights.sum()


def select_spans(
    candidates: tf.Tensor,
    starts: tf.Tensor,
    num: tf.Tensor,
    *,
    max_spans: int,
    seed: tf.Tensor,
    p: float = SPAN_P,
    max_words: int = SPAN_MAX_WORDS,
) -> tuple[tf.Tensor, tf.Tensor]:
    """SpanBERT's spans of whole words, `num` positions per row: (span int32 [B, L], drawn int32 [B, max_spans]).

    span: k > 0 where a position belongs to the k-th span added to its row, 0 where it is not selected;
    drawn: the length in words drawn for the k-th span of each row (0 where the row has fewer spans).

    Spans are added to every row at once, one per round, while the row has fewer than `num` positions:
    1. its length, l words, is drawn from `span_length_probabilities(p, max_words)`;
    2. it starts at a word start chosen uniformly among the free words (not in a span yet) that fit in the row's
       remaining budget of positions and have room for min(l, that budget) words: free words of the same segment
       (a span never crosses an earlier span or a non-candidate, i.e. a special token or padding); where the row
       has no such word left, uniformly among the fitting words with the longest room;
    3. budget rule, "cut": the span takes its l words, cut after its last whole word that fits in the budget (or
       at the end of its room, in the fallback of step 2).
    So a row gets exactly `num` positions, whole words only, as token masking gives it (the rate is unbiased),
    unless no free word is short enough for the last few (it stays under by less than one word: rare, as most
    words are one piece). Whether a span is added depends only on the spans before it, never on its own length,
    so `drawn` follows the distribution exactly; a span's real length falls short of its drawn one only where
    the budget cut it (about one span per row at 128 tokens) or the row had no room left for it.

    Example: candidates=[[F, T, T, T, T, T, F]], starts=[[F, T, F, T, T, T, F]] (words {1, 2}, {3}, {4}, {5}),
    num=[3] -> e.g. span [[0, 0, 0, 1, 1, 2, 0]], drawn [[2, 4, 0, ...]]: a first span of 2 words ({3}, {4}), then
    one drawn with 4 words, cut to {5} by the budget ({1, 2} does not fit the 1 position left); never half a word.
    """
    candidates = tf.convert_to_tensor(candidates, tf.bool)
    starts = tf.convert_to_tensor(starts, tf.bool)
    num = tf.convert_to_tensor(num, tf.int32)
    batch, length = tf.shape(candidates)[0], tf.shape(candidates)[1]
    # Word space [B, W = L]: word w of a row is its w-th word start and the candidates after it up to the next one.
    word = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1
    in_word = tf.logical_and(candidates, word >= 0)
    row_offset = tf.range(batch)[:, None] * length
    pieces = tf.reshape(
        tf.math.unsorted_segment_sum(
            tf.reshape(tf.cast(in_word, tf.int32), [-1]),
            tf.reshape(tf.where(in_word, word + row_offset, 0), [-1]),
            batch * length,
        ),
        [batch, length],
    )  # pieces of word w; 0 beyond the row's words
    # Room: the free words from w to the end of w's segment (a word whose start follows a candidate continues the
    # previous word's segment). Computed once here; each new span then only shortens the room before it.
    prev_candidate = tf.pad(candidates[:, :-1], [[0, 0], [1, 0]])
    joined = _scatter_rows(tf.where(starts, word, 0), tf.logical_and(starts, prev_candidate), tf.shape(starts))
    exists = pieces > 0
    segment = tf.cumsum(tf.cast(tf.logical_and(exists, tf.logical_not(joined)), tf.int32), axis=1)
    w = tf.range(length)[None, :]
    segment_end = tf.reshape(
        tf.math.unsorted_segment_max(
            tf.reshape(tf.where(exists, w, -1), [-1]), tf.reshape(segment + row_offset, [-1]), batch * length
        ),
        [batch, length],
    )
    room = tf.where(exists, tf.gather(segment_end, segment, batch_dims=1) - w + 1, 0)
    # Positions up to and including word w (padded: words past the row's end add none).
    through = tf.cumsum(pieces, axis=1)
    through = tf.concat([through, tf.repeat(through[:, -1:], max_words, axis=1)], axis=1)
    upper = tf.linalg.band_part(tf.ones([length, length]), 0, -1)  # x @ upper: running sums along a row
    # [B, max_spans]: the length of span k, drawn whether or not the row gets a k-th span, by inverting the
    # distribution function. (Not tf.random.stateless_categorical: from the 33rd row on, it draws other values
    # inside tf.data than eagerly, in TF 2.21.)
    cdf = np.cumsum(span_length_probabilities(p, max_words))[:-1].astype(np.float32)
    uniform = tf.random.stateless_uniform(
        [batch, max_spans], seed=tf.random.experimental.stateless_fold_in(seed, _SPAN_LENGTH)
    )
    drawn = 1 + tf.reduce_sum(tf.cast(uniform[:, :, None] >= cdf, tf.int32), axis=2)
    start_seed = tf.random.experimental.stateless_fold_in(seed, _SPAN_START)

    def add_span(k, word_span, room, count, active):
        remaining = num - count
        length_k = tf.gather(drawn, k, axis=1)
        fits = tf.logical_and(room > 0, pieces <= remaining[:, None])
        longest = tf.reduce_max(tf.where(fits, room, 0), axis=1)
        enough = tf.logical_and(fits, room >= tf.minimum(length_k, remaining)[:, None])
        eligible = tf.where(
            tf.reduce_any(enough, axis=1)[:, None], enough, tf.logical_and(fits, room == longest[:, None])
        )
        add = tf.logical_and(active, longest > 0)
        # A uniform choice among the eligible words: the first one where their running count exceeds u * count.
        running = tf.matmul(tf.cast(eligible, tf.float32), upper)
        u = tf.random.stateless_uniform([batch], seed=tf.random.experimental.stateless_fold_in(start_seed, k))
        first = tf.argmax(running > tf.floor(u * running[:, -1])[:, None], axis=1, output_type=tf.int32)
        # Its words: at most l, within its room, cut after the last one that fits in the budget.
        ahead = first[:, None] + tf.range(max_words)[None, :]
        budget_end = tf.gather(through, first, batch_dims=1) - tf.gather(pieces, first, batch_dims=1) + remaining
        in_budget = tf.reduce_sum(tf.cast(tf.gather(through, ahead, batch_dims=1) <= budget_end[:, None], tf.int32), 1)
        last = first + tf.minimum(tf.minimum(length_k, tf.gather(room, first, batch_dims=1)), in_budget)
        cover = tf.logical_and(add[:, None], tf.logical_and(w >= first[:, None], w < last[:, None]))
        word_span = tf.where(cover, k + 1, word_span)
        count = count + tf.reduce_sum(tf.where(cover, pieces, 0), axis=1)
        # The room of a word before the span now ends at the span; the span's words have none.
        shortened = tf.where(w < first[:, None], tf.minimum(room, first[:, None] - w), tf.where(cover, 0, room))
        room = tf.where(add[:, None], shortened, room)
        return k + 1, word_span, room, count, tf.logical_and(add, count < num)

    def more(k, word_span, room, count, active):
        return tf.logical_and(k < max_spans, tf.reduce_any(active))

    initial = (tf.constant(0), tf.zeros([batch, length], tf.int32), room, tf.zeros([batch], tf.int32), num > 0)
    _, word_span, _, _, _ = tf.while_loop(more, add_span, initial)
    # Spans are numbered 1, 2, ... in each row: the row's k-th span exists iff k <= its largest number.
    n_spans = tf.reduce_max(word_span, axis=1)
    lengths = tf.where(tf.range(max_spans)[None, :] < n_spans[:, None], drawn, 0)
    span = tf.where(in_word, tf.gather(word_span, tf.maximum(word, 0), batch_dims=1), 0)
    return span, lengths


def _scatter_rows(index: tf.Tensor, values: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    """bool `shape` [B, L], true at (b, index[b, k]) where values[b, k] (a segment max: faster than scatter_nd)."""
    batch, length = shape[0], shape[1]
    flat = tf.reshape(index + tf.range(batch)[:, None] * length, [-1])
    hits = tf.math.unsorted_segment_max(tf.reshape(tf.cast(values, tf.int32), [-1]), flat, batch * length)
    return tf.reshape(hits > 0, shape)


def _greedy_fill(sorted_len: tf.Tensor, num: tf.Tensor) -> tf.Tensor:
    """bool [B, K]: BERT's greedy: visit items in order, accept one if the accepted total stays <= num.

    Items of length 0 are never accepted. Example: sorted_len=[[2, 3, 1, 1]], num=[3] -> [[T, F, T, F]].
    Computed in rounds instead of item by item: each round accepts the longest prefix of the still-eligible items
    (not yet accepted, not longer than the remaining budget) that fits. An item skipped as too long never fits
    later (the budget only shrinks), so this equals the sequential greedy; every round accepts at least one item
    per unfinished row, and two or three rounds usually fill every row.
    """

    def eligible(accepted, budget):
        return tf.logical_and(
            tf.logical_and(sorted_len > 0, sorted_len <= budget[:, None]), tf.logical_not(accepted)
        )

    def body(accepted, budget):
        ok = eligible(accepted, budget)
        total = tf.cumsum(tf.where(ok, sorted_len, 0), axis=1)
        take = tf.logical_and(ok, total <= budget[:, None])
        budget = budget - tf.reduce_sum(tf.where(take, sorted_len, 0), axis=1)
        return tf.logical_or(accepted, take), budget

    def cond(accepted, budget):
        return tf.reduce_any(eligible(accepted, budget))

    accepted, _ = tf.while_loop(cond, body, (tf.zeros_like(sorted_len, dtype=tf.bool), num))
    return accepted


def gather_predictions(
    input_ids: tf.Tensor, selected: tf.Tensor, *, max_predictions: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The selected positions in increasing order, padded to max_predictions: (positions, original ids, weights).

    Example: input_ids=[[101, 7, 8, 9, 102]], selected=[[F, T, F, T, F]], max_predictions=3
    -> positions [[1, 3, 0]], ids [[7, 9, 0]], weights [[1., 1., 0.]].
    """
    if input_ids.shape[1] is not None and max_predictions > input_ids.shape[1]:
        raise ValueError(f"max_predictions={max_predictions} exceeds the sequence length {input_ids.shape[1]}")
    length = tf.shape(input_ids)[1]
    # top_k on (length - position) of selected slots returns them in increasing position order, others after.
    score = tf.where(selected, length - tf.range(length)[None, :], 0)
    values, positions = tf.math.top_k(score, k=max_predictions, sorted=True)
    real = values > 0
    positions = tf.where(real, positions, 0)
    labels = tf.where(real, tf.gather(input_ids, positions, batch_dims=1), 0)
    return positions, labels, tf.cast(real, tf.float32)


def replace_predictions(
    input_ids: tf.Tensor,
    positions: tf.Tensor,
    weights: tf.Tensor,
    *,
    mask_id: int,
    replacement_ids: Sequence[int],
    seed: tf.Tensor,
    units: tf.Tensor | None = None,
) -> tf.Tensor:
    """input_ids with each prediction position set to [MASK] (80 %), a random token (10 %) or left as is (10 %).

    Random tokens are drawn uniformly from `replacement_ids`; padding predictions (weight 0) change nothing.
    units: None (one draw per prediction), or int [B, P] in [0, P): predictions with the same unit share the
    [MASK] / random / same draw (spans); each random token is still drawn on its own.
    Example: input_ids=[[101, 7, 8, 102]], positions=[[1, 2, 0]], weights=[[1., 1., 0.]], mask_id=103
    -> e.g. [[101, 103, 8, 102]] (7 masked, 8 kept).
    """
    shape = tf.shape(positions)
    action = tf.random.stateless_uniform(shape, seed=tf.random.experimental.stateless_fold_in(seed, _ACTION))
    if units is not None:
        action = tf.gather(action, units, batch_dims=1)
    pick = tf.random.stateless_uniform(
        shape,
        seed=tf.random.experimental.stateless_fold_in(seed, _RANDOM_TOKEN),
        minval=0,
        maxval=len(replacement_ids),
        dtype=tf.int32,
    )
    original = tf.gather(input_ids, positions, batch_dims=1)
    random_token = tf.gather(tf.constant(np.asarray(replacement_ids, np.int32)), pick)
    new = tf.where(action < 0.8, mask_id, tf.where(action < 0.9, random_token, original))
    # Add (new - original) at each real position; padding entries (all at position 0) add 0.
    delta = tf.where(weights > 0, new - original, 0)
    rows = tf.broadcast_to(tf.range(shape[0])[:, None], shape)
    return input_ids + tf.scatter_nd(tf.stack([rows, positions], -1), delta, tf.shape(input_ids))
