"""Sentence pairs for next-sentence prediction (NSP, BERT) and sentence-order prediction (SOP, ALBERT), in-graph.

google-research/bert's `create_instances_from_document`, vectorised over a group of documents:

* Sentences: `split_sentences` cuts a document at line breaks (so one-sentence-per-line corpora, BERT's own
  format, keep their sentences) and after sentence-final punctuation (. ! ? possibly followed by closing quotes or
  brackets) when whitespace and then a character that is not a lower-case letter follow. Lower-case "e.g. this"
  or "H. americanus" stay whole; "Mr. Smith" is cut (regex splitting has no abbreviation list); fully lower-cased
  text without line breaks stays one sentence, and pairs are then cut inside it (see below).
* Per document a target length: `max_seq_len - 3`, or with probability `short_seq_prob` a random length in
  [2, max_seq_len - 3] (BERT's trick against a train/test length mismatch). Sentences are accumulated into a
  chunk until the target is reached; segment A is the first 1..n-1 sentences of the chunk (uniform).
* NSP: with probability 0.5 segment B is taken from another document of the same group (from a random sentence
  on, up to the remaining target length; label 1) and the chunk's unused sentences go back to the stream, as
  in BERT; otherwise B is the rest of the chunk (label 0). Random next segments come from the other documents of
  the same group (`pretraining.DOCUMENTS_PER_GROUP` of them, shuffled in training), not from the whole corpus.
* SOP: B is always the rest of the chunk; with probability 0.5 A and B are swapped (label 1).
* A chunk of a single sentence is split inside the sentence at a random token (BERT would force a random next
  segment, which skews the labels; ALBERT would then label a random segment as "swapped"). A one-token sentence
  cannot be split and yields no pair unless NSP picked a random next segment for it.
* The pair is truncated to `max_seq_len - 3` tokens by trimming the longer segment one token at a time, each
  time from the front or the back at random (BERT's `truncate_seq_pair`, here in closed form).

Row layout: `[CLS] A [SEP] B [SEP]` padded to `max_seq_len`; token_type_ids 0 up to the first [SEP], 1 after;
segment_ids = attention mask (1 on real tokens).
"""

from __future__ import annotations


from sslm_jax.data.tf_setup import tf

# After ". ! ?" (plus closing quotes/brackets) + whitespace + a non-lower-case character, insert a line break.
_SENTENCE_END = r"([.!?]['\"\x{2019}\x{201d})\]]*)\s+([^\p{Ll}\s])"

# Offsets folded into the group seed, one per independent random draw.
_TARGET, _LOOP, _PAIR = 0, 1, 2


def split_sentences(documents: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [N] -> ragged [N, (sentences)] of stripped, non-empty sentences (rule in the module docstring).

    Example: ["It rained. Then it stopped!\\nNext line", "e.g. this one"]
    -> [["It rained.", "Then it stopped!", "Next line"], ["e.g. this one"]].
    """
    marked = tf.strings.regex_replace(documents, _SENTENCE_END, "\\1\n\\2")
    lines = tf.strings.strip(tf.strings.split(marked, "\n"))
    return tf.ragged.boolean_mask(lines, tf.strings.length(lines) > 0)


def truncate_pair_lengths(len_a: tf.Tensor, len_b: tf.Tensor, max_tokens: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Lengths after BERT's truncate_seq_pair: trim the longer one (B on ties) until len_a + len_b <= max_tokens.

    Example, max_tokens=15: (3, 20) -> (3, 12); (20, 3) -> (12, 3); (10, 10) -> (8, 7); (4, 5) -> (4, 5).
    """
    half_up = (max_tokens + 1) // 2
    new_a = tf.minimum(len_a, tf.maximum(half_up, max_tokens - len_b))
    over = len_a + len_b > max_tokens
    return tf.where(over, new_a, len_a), tf.where(over, max_tokens - new_a, len_b)


def _chunk_documents(sentence_lens, first_sentence, n_sent, target, *, nsp: bool, can_random, seed):
    """BERT's sentence-accumulation loop, run for all documents of the group at once.

    sentence_lens: [S] tokens of every sentence of the group (documents one after another); first_sentence,
    n_sent, target: [G] per document. One step adds the next sentence of every unfinished document, so the loop
    runs as many steps as the longest document has sentences (plus put-backs). Returns per chunk (in document
    order): doc, start, end (sentence indices within the document, end exclusive), a_end (sentences in A) and
    is_random (NSP random next segment).
    """
    num_docs = tf.shape(n_sent)[0]
    last_sentence = tf.maximum(tf.size(sentence_lens) - 1, 0)

    def body(step, i, start, current, arrays):
        active = i < n_sent
        seg = tf.gather(sentence_lens, tf.minimum(first_sentence + i, last_sentence))
        current = current + tf.where(active, seg, 0)
        emit = tf.logical_and(active, tf.logical_or(tf.equal(i, n_sent - 1), current >= target))
        n_chunk = i - start + 1
        u = tf.random.stateless_uniform([num_docs, 2], seed=tf.random.experimental.stateless_fold_in(seed, step))
        a_end = tf.where(n_chunk >= 2, 1 + tf.cast(u[:, 0] * tf.cast(n_chunk - 1, tf.float32), tf.int32), 1)
        a_end = tf.minimum(a_end, tf.maximum(n_chunk - 1, 1))  # guards u * k rounding up to k
        is_random = tf.logical_and(tf.logical_and(tf.constant(nsp), can_random), u[:, 1] < 0.5)
        # A random next segment puts the chunk's sentences after A back into the stream (BERT: i -= unused).
        next_i = tf.where(tf.logical_and(emit, is_random), start + a_end, i + 1)
        arrays = [a.write(step + 1, v) for a, v in zip(arrays, (emit, start, i + 1, a_end, is_random), strict=True)]
        # Keep the per-document state's static shape (the random draws' shape is only known at run time).
        start = tf.ensure_shape(tf.where(emit, next_i, start), n_sent.shape)
        current = tf.ensure_shape(tf.where(emit, 0, current), n_sent.shape)
        i = tf.ensure_shape(tf.where(active, next_i, i), n_sent.shape)
        return step + 1, i, start, current, arrays

    def cond(step, i, start, current, arrays):
        return tf.reduce_any(i < n_sent)

    zeros = tf.zeros([num_docs], tf.int32)
    # Slot 0 holds a row of non-emitted chunks, so that stacking works even when no step runs (no sentences).
    arrays = [
        tf.TensorArray(dtype, size=1, dynamic_size=True, element_shape=[None]).write(0, tf.zeros([num_docs], dtype))
        for dtype in (tf.bool, tf.int32, tf.int32, tf.int32, tf.bool)
    ]
    _, _, _, _, arrays = tf.while_loop(cond, body, (tf.constant(0), zeros, zeros, zeros, arrays))
    # [steps, docs] -> [docs, steps] so that chunks come out grouped by document, in order.
    emit, start, end, a_end, is_random = (tf.transpose(a.stack()) for a in arrays)
    doc = tf.broadcast_to(tf.range(num_docs)[:, None], tf.shape(emit))
    return tuple(tf.boolean_mask(x, emit) for x in (doc, start, end, a_end, is_random))


def sentence_pairs(
    sentences: tf.RaggedTensor,
    *,
    max_seq_len: int,
    objective: str,
    short_seq_prob: float,
    seed: tf.Tensor,
    cls_id: int,
    sep_id: int,
) -> dict[str, tf.Tensor]:
    """Token ids of a group of documents, ragged [G, (sentences), (pieces)] -> pair rows [C, max_seq_len].

    Returns input_ids, token_type_ids, segment_ids [C, max_seq_len] and nsp_label [C] (rules in the module
    docstring); `seed` is an int [2] stateless seed. Example (objective "sop", max_seq_len 9, no truncation):
    one document [[5, 6], [7], [8, 9]] may give the chunk A=[5, 6], B=[7, 8, 9], swapped:
    input_ids [[101, 7, 8, 9, 102, 5, 6, 102, 0]], token_type_ids [[0, 0, 0, 0, 0, 1, 1, 1, 0]], nsp_label [1].
    """
    if objective not in ("nsp", "sop"):
        raise ValueError(f"sentence pairs are for objective 'nsp' or 'sop', not {objective!r}")
    max_tokens = max_seq_len - 3
    sentences = tf.cast(sentences, tf.int32)
    sentences = tf.ragged.boolean_mask(sentences, sentences.row_lengths(axis=2) > 0)
    # Everything below indexes the group's sentences and tokens globally (documents one after another), so no
    # [documents, sentences] matrix is ever built: a group of long documents costs memory linear in its size.
    flat_tokens = sentences.flat_values
    sentence_lens = tf.cast(sentences.values.row_lengths(), tf.int32)  # [S]
    offset = tf.pad(tf.cumsum(sentence_lens), [[1, 0]])  # [S + 1]: token offset of each sentence, then the end
    first_sentence = tf.cast(sentences.row_splits[:-1], tf.int32)  # [G]
    n_sent = tf.cast(sentences.row_lengths(), tf.int32)
    num_docs = tf.shape(n_sent)[0]
    nonempty = n_sent > 0
    num_nonempty = tf.reduce_sum(tf.cast(nonempty, tf.int32))

    u = tf.random.stateless_uniform([num_docs, 2], seed=tf.random.experimental.stateless_fold_in(seed, _TARGET))
    short_target = 2 + tf.cast(u[:, 1] * (max_tokens - 1), tf.int32)
    target = tf.where(u[:, 0] < short_seq_prob, tf.minimum(short_target, max_tokens), max_tokens)
    doc, start, end, a_end, is_random = _chunk_documents(
        sentence_lens,
        first_sentence,
        n_sent,
        target,
        nsp=objective == "nsp",
        can_random=num_nonempty >= 2,
        seed=tf.random.experimental.stateless_fold_in(seed, _LOOP),
    )
    num_chunks = tf.shape(doc)[0]
    r = tf.random.stateless_uniform([num_chunks, 6], seed=tf.random.experimental.stateless_fold_in(seed, _PAIR))

    doc_first = tf.gather(first_sentence, doc)
    a_start = tf.gather(offset, doc_first + start)
    a_stop = tf.gather(offset, doc_first + start + a_end)
    b_start, b_stop = a_stop, tf.gather(offset, doc_first + end)
    # A single-sentence chunk with B from the same document: split the sentence at a random token.
    single = tf.logical_and(tf.equal(end - start, 1), tf.logical_not(is_random))
    chunk_len = b_stop - a_start
    split = a_start + 1 + tf.cast(r[:, 0] * tf.cast(tf.maximum(chunk_len - 1, 0), tf.float32), tf.int32)
    split = tf.minimum(split, tf.maximum(b_stop - 1, a_start + 1))
    a_stop = tf.where(single, split, a_stop)
    b_start = tf.where(single, split, b_start)

    # NSP random next: another non-empty document of the group, from a random sentence on, up to the target.
    nonempty_docs = tf.cast(tf.where(nonempty)[:, 0], tf.int32)
    rank = tf.gather(tf.cumsum(tf.cast(nonempty, tf.int32)) - 1, doc)
    hop = 1 + tf.cast(r[:, 1] * tf.cast(tf.maximum(num_nonempty - 1, 1), tf.float32), tf.int32)
    other = tf.gather(nonempty_docs, (rank + hop) % tf.maximum(num_nonempty, 1))
    other_sent = tf.gather(n_sent, other)
    other_first = tf.gather(first_sentence, other)
    rand_start = other_first + tf.minimum(tf.cast(r[:, 2] * tf.cast(other_sent, tf.float32), tf.int32), other_sent - 1)
    base = tf.gather(offset, rand_start)
    target_b = tf.gather(target, doc) - (a_stop - a_start)
    # The first sentence from rand_start on whose end reaches the target (sentence ends increase), at least
    # rand_start itself, at most the other document's last sentence.
    reach = tf.searchsorted(offset[1:], base + target_b, side="left", out_type=tf.int32)
    last = tf.maximum(tf.minimum(reach, other_first + other_sent - 1), rand_start)
    b_start = tf.where(is_random, base, b_start)
    b_stop = tf.where(is_random, tf.gather(offset, last + 1), b_stop)

    len_a, len_b = a_stop - a_start, b_stop - b_start
    new_a, new_b = truncate_pair_lengths(len_a, len_b, max_tokens)
    # Each trimmed token came off the front or the back with probability 1/2: front count ~ Binomial(trimmed, 1/2).
    front = tf.random.stateless_binomial(
        [num_chunks, 2],
        seed=tf.random.experimental.stateless_fold_in(seed, _PAIR + 1),
        counts=tf.cast(tf.stack([len_a - new_a, len_b - new_b], axis=1), tf.float32),
        probs=0.5,
        output_dtype=tf.int32,
    )
    a_from = a_start + front[:, 0]
    b_from = b_start + front[:, 1]
    if objective == "sop":
        label = r[:, 3] < 0.5
        a_from, b_from = tf.where(label, b_from, a_from), tf.where(label, a_from, b_from)
        new_a, new_b = tf.where(label, new_b, new_a), tf.where(label, new_a, new_b)
    else:
        label = is_random
    keep = tf.logical_and(new_a >= 1, new_b >= 1)
    a_from, b_from, new_a, new_b, label = (tf.boolean_mask(x, keep) for x in (a_from, b_from, new_a, new_b, label))

    seg_a = tf.gather(flat_tokens, tf.ragged.range(a_from, a_from + new_a))
    seg_b = tf.gather(flat_tokens, tf.ragged.range(b_from, b_from + new_b))
    n = tf.shape(new_a)[0]
    cls = tf.fill([n, 1], tf.constant(cls_id, tf.int32))
    sep = tf.fill([n, 1], tf.constant(sep_id, tf.int32))
    rows = tf.concat([cls, seg_a, sep, seg_b, sep], axis=1).to_tensor(shape=[None, max_seq_len])
    position = tf.range(max_seq_len)[None, :]
    real = position < (new_a + new_b + 3)[:, None]
    return {
        "input_ids": rows,
        "token_type_ids": tf.cast(tf.logical_and(real, position >= (new_a + 2)[:, None]), tf.int32),
        "segment_ids": tf.cast(real, tf.int32),
        "nsp_label": tf.cast(label, tf.int32),
    }
