"""jsonl, tsv and csv records decoded inside the input graph (pretraining reads its files in tf.data, which keeps
the read position exact on resume), and the errors their checks raise while the pipeline runs.

    values, found = json_string_field(lines, "text")              # [N] strings, [N] bool
    lines = table_rows_or_fail(lines, "tsv", num_columns=2, path=path)
    for batch in numpy_batches(dataset): ...   # as_numpy_iterator(), a failed check raised as one DataError line
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from sslm_jax.data.files import import_tensorflow as _tf
from sslm_jax.errors import DataError

# A JSON token: a string (with escapes), a structural character, or a bare literal (number, true, false, null).
_JSON_TOKEN = r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+'
_JSON_ESCAPE = r"\\u[0-9a-fA-F]{4}|\\."
_SIMPLE_ESCAPES = {
    '\\"': '"', "\\\\": "\\", "\\/": "/", "\\b": "\b", "\\f": "\f", "\\n": "\n", "\\r": "\r", "\\t": "\t"
}


def json_string_field(lines, field: str):
    """JSON objects [N] -> (the top-level string `field` of each, decoded [N] tf.string; found [N] bool).

    Example: ['{"id": 1, "text": "a\\\\u00e9\\\\n"}', '{"meta": {"text": "x"}}'] with field "text"
    -> (["aé\\n", ""], [True, False]): the nested "text" is not top-level. A repeated key gives its last value,
    as Python's json.loads does. Keys are matched as written (a key spelled with escapes is not recognised).
    """
    tf = _tf()  # before tensorflow_text, which imports TensorFlow
    import tensorflow_text as tf_text

    lines = tf.strings.regex_replace(lines, "\\x00", "\ufffd")  # regex_split stops at NUL bytes
    tokens = tf_text.regex_split(lines, _JSON_TOKEN + r"|\s+", _JSON_TOKEN)  # [N, (tokens)]
    flat, row = tokens.flat_values, tokens.value_rowids()
    opens = tf.cast(tf.strings.regex_full_match(flat, r"[\[{]"), tf.int64)
    closes = tf.cast(tf.strings.regex_full_match(flat, r"[\]}]"), tf.int64)
    before = tf.math.cumsum(opens - closes, exclusive=True)
    row_start = tf.gather(tf.concat([before, [0]], 0), tokens.row_starts())
    depth = before - tf.gather(row_start, row)  # nesting level at each token
    next_token = tf.concat([flat[1:], [""]], 0)
    same_row_next = tf.concat([tf.equal(row[1:], row[:-1]), [False]], 0)
    is_key = tf.equal(flat, json.dumps(field)) & tf.equal(depth, 1) & tf.equal(next_token, ":") & same_row_next
    # The value is two tokens after its key (`"text" : value`), in the same line. Last occurrence wins.
    num_tokens = tf.size(flat, out_type=tf.int64)
    candidate = tf.where(is_key, tf.range(num_tokens) + 2, -1)
    chosen = tf.maximum(tf.math.unsorted_segment_max(candidate, row, tokens.nrows()), -1)  # -1: no key
    safe = tf.where((chosen >= 0) & (chosen < num_tokens), chosen, num_tokens)  # num_tokens: the padding slot
    value = tf.gather(tf.concat([flat, [""]], 0), safe)
    value_row = tf.gather(tf.concat([row, [-1]], 0), safe)
    found = tf.equal(value_row, tf.range(tokens.nrows())) & tf.strings.regex_full_match(value, r'(?s)".*"')
    return tf.where(found, _json_unescape(value), ""), found


def _json_unescape(quoted):
    """JSON string literals [N] (with their quotes) -> decoded UTF-8 [N]: '"a\\\\tb\\\\ud83d\\\\ude00"' -> "a\\tb😀".

    Lone surrogates become U+FFFD; an invalid escape such as \\\\x is kept as written.
    """
    tf = _tf()  # before tensorflow_text, which imports TensorFlow
    import tensorflow_text as tf_text

    body = tf.strings.regex_replace(quoted, r'(?s)^"(.*)"$', r"\1")
    pieces = tf_text.regex_split(body, _JSON_ESCAPE, _JSON_ESCAPE)  # literal text and escapes, in order
    flat = pieces.flat_values
    is_unicode = tf.strings.regex_full_match(flat, _JSON_ESCAPE.split("|")[0])
    hex_text = tf.strings.substr(tf.where(is_unicode, flat, "\\u0000"), 2, 4)
    hex_digits = tf.io.decode_raw(hex_text, tf.uint8, fixed_length=4)
    digits = tf.cast(hex_digits, tf.int32)
    digits = tf.where(digits <= ord("9"), digits - ord("0"), (digits | 0x20) - ord("a") + 10)
    unit = tf.reduce_sum(digits * tf.constant([4096, 256, 16, 1]), axis=1)
    high = is_unicode & (unit >= 0xD800) & (unit < 0xDC00)
    low = is_unicode & (unit >= 0xDC00) & (unit < 0xE000)
    same_row_next = tf.concat([tf.equal(pieces.value_rowids()[1:], pieces.value_rowids()[:-1]), [False]], 0)
    pairs_with_next = high & tf.concat([low[1:], [False]], 0) & same_row_next
    ends_pair = tf.concat([[False], pairs_with_next[:-1]], 0)
    next_unit = tf.concat([unit[1:], [0]], 0)
    code_point = tf.where(pairs_with_next, 0x10000 + (unit - 0xD800) * 0x400 + (next_unit - 0xDC00), unit)
    code_point = tf.where((high | low) & ~pairs_with_next, 0xFFFD, code_point)
    decoded = tf.strings.unicode_encode(code_point[:, tf.newaxis], "UTF-8")
    out = tf.where(is_unicode, decoded, flat)
    out = tf.where(ends_pair, "", out)
    for escape, char in _SIMPLE_ESCAPES.items():
        out = tf.where(tf.equal(flat, escape), char, out)
    return tf.strings.reduce_join(pieces.with_flat_values(out), axis=1)


def table_rows_or_fail(lines, format: str, num_columns: int, path):  # noqa: A002
    """tsv/csv lines [N], checked to be `num_columns` fields each; stops the pipeline on one that is not, naming the
    file and the line (decode_csv's own error names neither: "Expect 2 fields but have 3 in record 87", the index
    inside a vector of lines). csv follows decode_csv's rules: quotes only around a whole field, "" inside them, and
    one record per line."""
    tf = _tf()
    field = '"(?:[^"]|"")*"|[^",]*' if format == "csv" else "[^\t]*"
    sep = "," if format == "csv" else "\t"
    ok = tf.strings.regex_full_match(lines, f"(?:{field})(?:{sep}(?:{field})){{{num_columns - 1}}}")
    first_bad = tf.strings.substr(tf.boolean_mask(lines, ~ok)[:1], 0, 200)
    rule = f"{num_columns} fields as its header has" + (" (quotes only around a whole field)" if sep == "," else "")
    check = tf.debugging.Assert(tf.reduce_all(ok), [f"a {format} line of", path, f"is not {rule}:", first_bad])
    with tf.control_dependencies([check]):
        return tf.identity(lines)


def json_field_or_fail(lines, field: str, path):
    """JSON lines [N] -> their string `field` [N]; stops the pipeline on a line without it, naming the file."""
    tf = _tf()
    values, found = json_string_field(lines, field)
    first_bad = tf.strings.substr(tf.boolean_mask(lines, ~found)[:1], 0, 200)
    check = tf.debugging.Assert(
        tf.reduce_all(found), ["jsonl line without a string field", field, "in", path, ":", first_bad]
    )
    with tf.control_dependencies([check]):
        return tf.identity(values)


def pipeline_error(error: Exception) -> DataError | None:
    """The one-line DataError for an InvalidArgumentError that a check above raised while the pipeline ran (a bad line
    deep in a file), e.g. 'a tsv line of data/a.tsv is not 2 fields as its header has: b\\t2\\t3'; None for any
    other error. tf.debugging.Assert prints each datum in brackets after "assertion failed: "."""
    message = getattr(error, "message", str(error))
    if "assertion failed: [" not in message:
        return None
    printed = message.split("assertion failed: [", 1)[1].split("\n", 1)[0].rstrip()
    parts = printed.removesuffix("]").split("] [")
    return DataError(" ".join(parts).replace('\\"', '"').replace(" :", ":"))


@contextlib.contextmanager
def data_errors():
    """Turns a bad line found while a pipeline runs (a jsonl line without the text field, a tsv/csv line that is not
    a record of the header's fields) into one DataError line; other errors pass unchanged."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - tf.errors.InvalidArgumentError, without importing TF to name it
        error = pipeline_error(e) if isinstance(e, _tf().errors.InvalidArgumentError) else None
        if error is None:
            raise
        raise error from None


def numpy_batches(dataset) -> Iterator:
    """`dataset.as_numpy_iterator()`, with `data_errors`."""
    it = dataset.as_numpy_iterator()
    while True:
        with data_errors():
            batch = next(it, None)
        if batch is None:
            return
        yield batch


def elements(dataset, *, batch_size: int = 1024) -> Iterator:
    """The elements of a dataset of scalars, one by one, read in batches: a `next()` on TF's iterator costs about half
    a millisecond, which made one pass over a small corpus's documents (vocabulary training reads it twice) take
    seconds."""
    for batch in numpy_batches(dataset.batch(batch_size)):
        yield from batch
