"""Packed full-sentence sequences for the "mlm" objective: documents concatenated and cut to a fixed length.

RoBERTa's FULL-SENTENCES input, simplified to a cut at the length: the tokens of consecutive documents form one
stream, each document followed by [SEP]; the stream is cut into chunks of `max_seq_len - 2` tokens and each chunk
becomes `[CLS] chunk [SEP]`. No token is wasted on padding (except in the last row of a finite pass); a row may
begin or end mid-sentence. `segment_ids` number the documents inside a row (1, 2, ...; 0 = padding) so the model
can keep attention inside a document (`config.data.segment_attention`).

The three steps, each usable eagerly or inside `tf.data`:
    document_stream  ragged [G, (pieces)] -> the group's token stream with [SEP]s and document-start flags
    cut_stream       (carry, stream) -> full chunks [n, C] (+ the partial rest when flushing) and the new carry
    packed_rows      chunks [n, C] -> rows: input_ids / token_type_ids / segment_ids [n, L], nsp_label [n]
`pack_dataset` chains them over a dataset of document streams with `tf.data.Dataset.scan` (checkpointable state);
`chunk_dataset` is its first half, which the causal-LM rows (causal_lm.py) share.
"""

from __future__ import annotations


from sslm_jax.data.tf_setup import tf


def document_stream(token_ids: tf.RaggedTensor, *, sep_id: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The non-empty documents of a group, each followed by [SEP], as one stream (ids, document-start flags).

    Example: token_ids=[[5, 6], [], [7]], sep_id=102 -> ids [5, 6, 102, 7, 102], starts [T, F, F, T, F].
    """
    token_ids = tf.cast(token_ids, tf.int32)
    docs = tf.ragged.boolean_mask(token_ids, token_ids.row_lengths() > 0)
    sep = tf.fill([docs.nrows(), 1], tf.constant(sep_id, tf.int32))
    docs = tf.concat([docs, sep], axis=1)
    starts = tf.equal(tf.ragged.range(docs.row_lengths()), 0)
    return docs.flat_values, starts.flat_values


def cut_stream(
    carry_ids: tf.Tensor,
    carry_starts: tf.Tensor,
    ids: tf.Tensor,
    starts: tf.Tensor,
    *,
    chunk: int,
    flush: tf.Tensor | bool = False,
) -> tuple[tuple[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """Appends a stream to the carry and cuts off every full chunk; with `flush`, the partial rest too.

    Returns ((new carry ids, new carry starts), (chunk ids [n, chunk], chunk starts [n, chunk], lengths [n])),
    chunks padded with 0 / False. Example, chunk=3: carry [5], new stream [6, 102, 7, 102]
    -> chunks [[5, 6, 102]], lengths [3], carry [7, 102]; with flush -> chunks [[5, 6, 102], [7, 102, 0]],
    lengths [3, 2], carry [].
    """
    stream = tf.concat([carry_ids, ids], 0)
    stream_starts = tf.concat([carry_starts, starts], 0)
    total = tf.size(stream)
    full = total // chunk
    rows = tf.where(tf.convert_to_tensor(flush), (total + chunk - 1) // chunk, full)
    pad = rows * chunk - tf.minimum(total, rows * chunk)
    cut_ids = tf.reshape(tf.pad(stream[: rows * chunk], [[0, pad]]), [rows, chunk])
    cut_starts = tf.reshape(tf.pad(stream_starts[: rows * chunk], [[0, pad]]), [rows, chunk])
    lengths = tf.minimum(chunk, total - tf.range(rows) * chunk)
    kept = tf.minimum(total, rows * chunk)
    return (stream[kept:], stream_starts[kept:]), (cut_ids, cut_starts, lengths)


def packed_rows(
    ids: tf.Tensor, starts: tf.Tensor, lengths: tf.Tensor, *, max_seq_len: int, cls_id: int, sep_id: int
) -> dict[str, tf.Tensor]:
    """Chunks [n, max_seq_len - 2] -> `[CLS] chunk [SEP]` rows [n, max_seq_len] with per-document segment ids.

    [CLS] belongs to the row's first document, the closing [SEP] to its last one. Example, max_seq_len=7:
    ids [[5, 6, 102, 7, 0]], starts [[T, F, F, T, F]], lengths [4] -> input_ids [[101, 5, 6, 102, 7, 102, 0]],
    segment_ids [[1, 1, 1, 1, 2, 2, 0]], token_type_ids all 0, nsp_label [0].
    """
    n = tf.shape(ids)[0]
    chunk = max_seq_len - 2
    real = tf.range(chunk)[None, :] < lengths[:, None]
    ids = tf.where(real, ids, 0)
    starts = tf.logical_and(starts, real)
    # Document number inside the row: count of starts so far, plus one when the row begins mid-document.
    doc = tf.cumsum(tf.cast(starts, tf.int32), axis=1) + 1 - tf.cast(starts[:, :1], tf.int32)
    doc = tf.where(real, doc, 0)
    last_doc = tf.gather(doc, tf.maximum(lengths - 1, 0), batch_dims=1)
    cls = tf.fill([n, 1], tf.constant(cls_id, tf.int32))
    input_ids = tf.concat([cls, ids, tf.zeros([n, 1], tf.int32)], axis=1)
    segment_ids = tf.concat([tf.ones([n, 1], tf.int32), doc, tf.zeros([n, 1], tf.int32)], axis=1)
    # The closing [SEP] goes right after the last real token (position length + 1).
    closing = tf.equal(tf.range(max_seq_len)[None, :], lengths[:, None] + 1)
    input_ids = tf.where(closing, sep_id, input_ids)
    segment_ids = tf.where(closing, last_doc[:, None], segment_ids)
    return {
        "input_ids": input_ids,
        "token_type_ids": tf.zeros([n, max_seq_len], tf.int32),
        "segment_ids": segment_ids,
        "nsp_label": tf.zeros([n], tf.int32),
    }


def pack_dataset(
    streams: tf.data.Dataset, *, max_seq_len: int, cls_id: int, sep_id: int, finite: bool
) -> tf.data.Dataset:
    """Dataset of (ids [T], starts [T]) streams -> dataset of row groups, each a `packed_rows` dict [n, L].

    Groups (n >= 0 rows each) rather than single rows, so that per-row work can still be done batched before
    the caller's `unbatch()`.
    """
    chunks = chunk_dataset(streams, chunk=max_seq_len - 2, finite=finite)
    return chunks.map(
        lambda ids, starts, lengths: packed_rows(
            ids, starts, lengths, max_seq_len=max_seq_len, cls_id=cls_id, sep_id=sep_id
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def chunk_dataset(streams: tf.data.Dataset, *, chunk: int, finite: bool) -> tf.data.Dataset:
    """Dataset of (ids [T], starts [T]) streams -> dataset of `cut_stream` chunks (ids, starts [n, chunk], lengths).

    The carry between elements lives in `Dataset.scan`'s state, which tf.data checkpoints with the iterator.
    `finite=True` flushes the last partial chunk at the end (evaluation sees every token); an infinite training
    stream never ends, so nothing is left behind there either.
    """
    flagged = streams.map(lambda ids, starts: (ids, starts, False))
    if finite:
        flagged = flagged.concatenate(
            tf.data.Dataset.from_tensors((tf.zeros([0], tf.int32), tf.zeros([0], tf.bool), True))
        )

    def step(carry, element):
        ids, starts, flush = element
        carry, cut = cut_stream(carry[0], carry[1], ids, starts, chunk=chunk, flush=flush)
        return carry, cut

    initial = (tf.zeros([0], tf.int32), tf.zeros([0], tf.bool))
    return flagged.scan(initial, step)
