"""Where pretraining text comes from: files, TFDS, or the embedded offline corpus, as tf.data of documents.

Every function returns a `tf.data.Dataset` of scalar tf.string documents for *this host*, in a deterministic order
(shuffling is the pipeline's job):

    file_documents("corpus/*.txt.gz")                          # blank-line-separated documents
    file_documents("a.jsonl,b.jsonl", format="jsonl", text_field="text")
    file_documents("train.tsv", format="tsv", text_field="sentence")
    tfds_documents("wikipedia/20230601.en", split="train", text_field="text")   # prepared data only
    stdlib_documents()                                         # offline: the Python standard library's docstrings
    documents(config.data, split="train")                      # dispatch on config.data.source, with eval split

Paths are expanded by `sslm_jax.data.files` (comma-separated globs, recursive `**`, gs:// and other tf.io.gfile URLs),
the reader fine-tuning files share. Formats of `file_documents` (plain or .gz, read line by line, never whole):
  text   documents separated by blank lines; a document's lines are joined with "\\n" (sentence boundaries of
         one-sentence-per-line corpora survive). "A b\\nc\\n\\n\\nd\\n" -> ["A b\\nc", "d"].
  lines  one document per non-blank line.
  jsonl  one JSON object per line; the document is its top-level string field `text_field`, JSON escapes decoded.
  tsv    a header row naming the columns, then one record per line; the document is column `text_field`. Fields
         are taken literally (no quoting: SST-2/GLUE style). csv: the same with "," and "..." quoting (RFC 4180),
         one record per line.
Blank lines are skipped in every format.

Invalid UTF-8: every document is passed through `tf.strings.unicode_transcode(..., errors="replace")`, so bytes
that are not UTF-8 become U+FFFD (which the BERT normaliser then drops) instead of failing mid-training. A file
with NUL bytes in its first 8 KiB is refused as binary (UTF-16 text included).

Sharding across hosts: by file when there are at least `process_count` files (file i goes to host
i % process_count), else every host reads every file and keeps every process_count-th document. TFDS splits are
divided into contiguous, equal ranges of examples (`tfds.even_splits`). Every host draws the same rows per step, so
with sharding by file a host with fewer documents repeats its own more often (3 equal files on 2 hosts: host 1's
documents are seen twice as often): give a number of files that the hosts divide, of similar sizes.

Errors that can be found before training (a glob that matches nothing, a binary or empty corpus, a missing jsonl
field or tsv column, an unknown or unprepared TFDS dataset) raise `DataError` when the dataset is built, before
TensorFlow is even imported for local files. A jsonl line further down that lacks the field, or a tsv/csv line
that is not one record of the header's fields, stops the pipeline with an InvalidArgumentError naming the file and
showing the line (`graph_records.pipeline_error` turns it into a one-line DataError).
"""

from __future__ import annotations

import ast
import collections
import functools
import hashlib
import os
import pathlib
import re
import sys
import sysconfig

import numpy as np

from sslm_jax.data import graph_records, table_cache
from sslm_jax.data.files import expand, json_records, open_binary, open_text, reading, table_reader
from sslm_jax.data.files import import_tensorflow as _tf
from sslm_jax.errors import ConfigError, DataError

FORMATS = ("text", "lines", "jsonl", "tsv", "csv")
SOURCES = ("stdlib", "files", "tfds")
_SNIFF_BYTES = 8192
_HASH_BUCKETS = 1_000_000  # resolution of the held-out eval split (eval_fraction in steps of 1e-6)
_RECORDS_PER_CALL = 256  # jsonl/tsv/csv lines parsed per op call


# --- Files ----------------------------------------------------------------------------------------------------


def file_documents(
    patterns: str | os.PathLike | list[str | os.PathLike],
    *,
    format: str = "text",  # noqa: A002 - the name users know from the config (`data.format`)
    text_field: str = "text",
    process_index: int = 0,
    process_count: int = 1,
):
    """This host's documents from text files (formats, sharding and errors: see the module docstring).

    Args:
      patterns: a glob, comma-separated globs, or a list of globs/paths; local or any `tf.io.gfile` URL (gs://).
      format: "text" | "lines" | "jsonl" | "tsv" | "csv".
      text_field: the jsonl field or the tsv/csv column holding the text.
      process_index, process_count: this host among all hosts.

    Example: a file "a.txt" holding "Hello\\nworld\\n\\nBye\\n" -> file_documents("a.txt") yields
    b"Hello\\nworld", b"Bye"; with format="lines": b"Hello", b"world", b"Bye".
    """
    _check_process(process_index, process_count)
    if format not in FORMATS:
        raise ConfigError(f"data format {format!r} is not one of {', '.join(FORMATS)}")
    files = expand(patterns)
    by_file = len(files) >= process_count
    if by_file:
        files = files[process_index::process_count]
    header = None
    has_text = False
    for path in files:
        file_header, file_has_text = _inspect(path, format=format, text_field=text_field)
        if header is not None and file_header != header:
            raise DataError(f"{path} has columns {file_header} but {files[0]} has {header}; all files must agree")
        header = file_header
        has_text = has_text or file_has_text
    if not has_text:
        where = "this host's files" if by_file and process_count > 1 else "the corpus"
        raise DataError(f"{where} matched by {_show(patterns)} is empty: no text in {len(files)} file(s)")

    tf = _tf()
    reader = functools.partial(
        _read_file,
        format=format,
        text_field=text_field,
        column=header.index(text_field) if header else None,
        num_columns=len(header) if header else 0,
    )
    compression = ["GZIP" if f.endswith(".gz") else "" for f in files]
    docs = tf.data.Dataset.from_tensor_slices((files, compression)).flat_map(reader)
    if not by_file:
        docs = docs.shard(process_count, process_index)
    return docs.map(_valid_utf8, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _inspect(path: str, *, format: str, text_field: str) -> tuple[list[str] | None, bool]:  # noqa: A002
    """Checks one file on the host: (tsv/csv header or None, whether the file holds any text)."""
    with reading(path):
        with open_binary(path) as f:
            if b"\x00" in f.read(_SNIFF_BYTES):
                raise DataError(
                    f"{path} looks binary (NUL bytes in its first {_SNIFF_BYTES} bytes); expected UTF-8 text"
                )
        with open_text(path, errors="replace") as lines:
            if format in ("text", "lines"):
                return None, any(line.strip() for line in lines)
            if format == "jsonl":
                return None, _check_jsonl(path, lines, text_field)
            header, _ = table_reader(lines, format, path)
            if text_field not in header:
                raise DataError(
                    f"{path} has no column {text_field!r} in its header {header}; name the text column "
                    "(data.text_field, or --text-field)"
                )
            return header, any(line.strip() for line in lines)


def _check_jsonl(path: str, lines, text_field: str) -> bool:
    """The first non-blank line must be a JSON object with a string `text_field`; False if there is none."""
    for where, record in json_records(lines, path):
        if not isinstance(record.get(text_field), str):
            raise DataError(
                f"{where} has no string field {text_field!r} (fields: {sorted(record)}); name the text field "
                "(data.text_field, or --text-field)"
            )
        return True
    return False


def _read_file(path, compression, *, format: str, column: int | None, num_columns: int, text_field: str):  # noqa: A002
    """One file's documents, in-graph (runs inside `flat_map`)."""
    tf = _tf()
    lines = tf.data.TextLineDataset(path, compression_type=compression)  # strips "\n" and "\r\n"
    if format == "text":
        return _join_paragraphs(lines)
    if format in ("tsv", "csv"):
        lines = lines.skip(1)
    lines = lines.filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)
    if format == "lines":
        return lines
    # Records are decoded in vectors of _RECORDS_PER_CALL (much faster than one by one), then split up again.
    batches = lines.batch(_RECORDS_PER_CALL)
    if format == "jsonl":
        return batches.map(lambda batch: graph_records.json_field_or_fail(batch, text_field, path)).unbatch()
    quoted = format == "csv"

    def decode(batch):
        batch = graph_records.table_rows_or_fail(batch, format, num_columns, path)
        return tf.io.decode_csv(batch, [""] * num_columns, field_delim="," if quoted else "\t", use_quote_delim=quoted)

    return batches.map(lambda batch: decode(batch)[column]).unbatch()


def _join_paragraphs(lines):
    """Lines -> documents separated by blank lines: ["a", "b", "", " ", "c"] -> ["a\\nb", "c"]."""
    tf = _tf()

    def step(state, line):
        doc, num_lines = state
        blank = tf.equal(tf.strings.strip(line), "")
        grown = tf.cond(num_lines > 0, lambda: tf.strings.join([doc, line], "\n"), lambda: line)
        emit = blank & (num_lines > 0)
        return (tf.where(blank, "", grown), tf.where(blank, 0, num_lines + 1)), (emit, doc)

    flushed = lines.concatenate(tf.data.Dataset.from_tensors(tf.constant("")))  # ends the last document
    documents = flushed.scan((tf.constant(""), tf.constant(0)), step)
    return documents.filter(lambda emit, doc: emit).map(lambda emit, doc: doc)


def _valid_utf8(doc):
    return _tf().strings.unicode_transcode(doc, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)


# --- TFDS -------------------------------------------------------------------------------------------------------


def tfds_documents(
    name: str,
    *,
    split: str,
    text_field: str,
    data_dir: str | None = None,
    process_index: int = 0,
    process_count: int = 1,
):
    """This host's share of the string feature `text_field` of a *prepared* TFDS dataset; never downloads.

    Example: tfds_documents("imdb_reviews/plain_text", split="train", text_field="text") -> this host's
    1/process_count of the 25,000 reviews, once `tfds build imdb_reviews` has prepared them.
    """
    _check_process(process_index, process_count)
    tf = _tf()
    import tensorflow_datasets as tfds

    where = data_dir or "TFDS's default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"TFDS has no dataset named {name!r} (data.tfds_name); check the name and version") from e
    if not builder.is_prepared():
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {where}; prepare it where there is internet access with "
            f"`tfds build {name} --data_dir=DIR` and set data.tfds_data_dir=DIR (nothing is downloaded here)"
        )
    features = builder.info.features
    if text_field not in features:
        raise DataError(f"TFDS dataset {name!r} has no feature {text_field!r} (features: {sorted(features)})")
    feature = features[text_field]
    if feature.tf_dtype != tf.string or tuple(feature.shape) != ():
        kind = f"{feature.tf_dtype.name}{list(feature.shape)}"
        raise DataError(f"TFDS feature {name}:{text_field} is {kind}, not a string")
    try:
        host_split = tfds.even_splits(split, n=process_count)[process_index]
        examples = builder.as_dataset(split=host_split, shuffle_files=False)
    except (ValueError, KeyError) as e:  # TFDS's message names the known splits
        raise DataError(f"TFDS dataset {name!r} cannot read split {split!r}: {e}") from e
    return examples.map(lambda example: _valid_utf8(example[text_field]))


# --- The embedded offline corpus ----------------------------------------------------------------------------------

# Tests, third-party packages, and the generated codec tables of `encodings` (boilerplate docstrings).
_STDLIB_SKIP_DIRS = {
    "test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "pydoc_data", "encodings"
}
_MIN_DOCSTRING_CHARS = 80  # shorter docstrings ("Return self.") are mostly boilerplate


def stdlib_documents(*, process_index: int = 0, process_count: int = 1):
    """Real English text every Python installation carries: the standard library's docstrings, offline.

    The documents are the docstrings (of at least 80 characters) of the modules, classes and functions of the
    standard library's .py sources, read with `ast` (nothing is imported), plus the language-reference topics
    of `pydoc_data.topics`; tests and codec tables are left out. About 4,500 documents, 2 MB, in a fixed order
    for a given Python version. Example document: the docstring of `textwrap.dedent` ("Remove any common
    leading whitespace from every line in `text`. ..."). Parsing takes seconds, once per installation
    (`_docstrings`).
    """
    _check_process(process_index, process_count)
    docs = _stdlib_texts()
    return _tf().data.Dataset.from_tensor_slices(list(docs)).shard(process_count, process_index)


@functools.lru_cache(maxsize=1)
def _stdlib_texts() -> tuple[str, ...]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    if not (root / "os.py").is_file():
        raise DataError(f"the Python standard library sources are not at {root}; use data.source='files' instead")
    return _docstrings(root)


def _docstrings(root: pathlib.Path) -> tuple[str, ...]:
    """The corpus of the standard library at `root`: parsed once (~8 s on one core), then read from the on-disk
    cache (`table_cache`, ~0.05 s). Every process that trains or evaluates on the stdlib corpus (the demos, the
    smoke runs) paid the parse. The cache key lists every source file with its size and modification time, and
    the Python version, so an edited, added or removed file means a new parse."""
    paths = _stdlib_sources(root)
    listing = hashlib.sha256()
    for path in [*paths, root / "pydoc_data" / "topics.py"]:
        if path.is_file():
            stat = path.stat()
            listing.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    key = {"root": str(root), "python": sys.version, "files": listing.hexdigest()}
    packed = table_cache.cached_arrays("stdlib_docstrings", key, lambda: _pack(_parse_docstrings(root, paths)))
    data, offsets = packed["utf8"].tobytes(), packed["offsets"].tolist()
    return tuple(data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(offsets, offsets[1:]))


def _pack(texts: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Texts as arrays: their UTF-8 bytes, concatenated, and where each starts ("surrogatepass": a docstring may
    spell a lone surrogate as an escape, and the cache must give back exactly what the parse gave)."""
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return {"utf8": np.frombuffer(b"".join(encoded), np.uint8), "offsets": offsets}


def _parse_docstrings(root: pathlib.Path, paths: list[pathlib.Path]) -> tuple[str, ...]:
    docs: dict[str, None] = {}  # insertion-ordered set: repeated docstrings count once
    for path in paths:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):  # e.g. templates shipped as .py; not part of the corpus
            continue
        for node in _statements(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc and len(doc) >= _MIN_DOCSTRING_CHARS:
                    docs[doc] = None
    topics = root / "pydoc_data" / "topics.py"
    if topics.is_file():
        for node in ast.parse(topics.read_bytes()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                docs.update(dict.fromkeys(t.strip() for t in ast.literal_eval(node.value).values()))
    return tuple(docs)


def _statements(tree: ast.AST):
    """The statements of a module, breadth-first (like `ast.walk`, but 5x faster: expressions are not visited)."""
    queue = collections.deque([tree])
    while queue:
        node = queue.popleft()
        yield node
        statements = (ast.stmt, ast.ExceptHandler, ast.match_case)
        queue.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, statements))


def _stdlib_sources(root: pathlib.Path) -> list[pathlib.Path]:
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _STDLIB_SKIP_DIRS and not d.startswith("."))
        found += [pathlib.Path(directory, n) for n in sorted(names) if n.endswith(".py")]
    return sorted(found)


# --- Dispatch on the config -------------------------------------------------------------------------------------


def documents(data_config, *, split: str, process_index: int = 0, process_count: int = 1):
    """The documents of `split` ("train" | "eval") for `config.data` (fields in configs/base.py).

    Without eval files / an eval split, a fixed hash of each document's text holds out `eval_fraction` of the
    documents: the same ones in every run and on any number of hosts, and repeated documents all fall on the
    same side.
    For the stdlib corpus the held-out documents also lose every sentence a training document contains
    (`_stdlib_split`), so held-out metrics measure text the model never saw.
    """
    c = data_config
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    shard = dict(process_index=process_index, process_count=process_count)
    if c.source == "stdlib":
        _check_eval_fraction(c.eval_fraction, split)
        _check_process(process_index, process_count)
        docs = _stdlib_split(c.eval_fraction)[split == "eval"]
        tf = _tf()
        return tf.data.Dataset.from_tensor_slices(tf.constant(docs, tf.string)).shard(process_count, process_index)
    if c.source == "files":
        if not c.train_files:
            raise ConfigError("data.source='files' needs data.train_files (glob(s) of the training text)")
        read = functools.partial(file_documents, format=c.format, text_field=c.text_field, **shard)
        if c.eval_files:
            return read(c.train_files if split == "train" else c.eval_files)
        return _held_out(read(c.train_files), c.eval_fraction, split)
    if c.source == "tfds":
        if not c.tfds_name:
            raise ConfigError("data.source='tfds' needs data.tfds_name, e.g. 'wikipedia/20230601.en'")
        read = functools.partial(
            tfds_documents, c.tfds_name, text_field=c.text_field, data_dir=c.tfds_data_dir or None, **shard
        )
        if c.tfds_eval_split:
            return read(split=c.tfds_train_split if split == "train" else c.tfds_eval_split)
        return _held_out(read(split=c.tfds_train_split), c.eval_fraction, split)
    raise ConfigError(f"data.source={c.source!r} is not one of {', '.join(SOURCES)}")


def _held_out(docs, eval_fraction: float, split: str):
    """Keeps the documents whose hash falls in the eval fraction (split="eval") or outside it ("train")."""
    _check_eval_fraction(eval_fraction, split)
    tf = _tf()
    threshold = round(eval_fraction * _HASH_BUCKETS)
    in_eval = lambda doc: tf.strings.to_hash_bucket_fast(doc, _HASH_BUCKETS) < threshold  # noqa: E731
    return docs.filter(in_eval if split == "eval" else lambda doc: tf.logical_not(in_eval(doc)))


def _check_eval_fraction(eval_fraction: float, split: str) -> None:
    if not 0 <= eval_fraction < 1:
        raise ConfigError(f"data.eval_fraction={eval_fraction} must be in [0, 1)")
    if split == "eval" and eval_fraction == 0:
        raise ConfigError("no eval data: set data.eval_fraction > 0 or give eval files / an eval split")


# A sentence ends at . ! ? before whitespace, or at a blank line (docstrings' paragraphs and lists).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def sentences(text: str) -> list[str]:
    """`text` cut into sentences, each with its whitespace collapsed (empty pieces dropped)."""
    return [" ".join(piece.split()) for piece in _SENTENCE_END.split(text) if piece.strip()]


@functools.lru_cache(maxsize=4)
def _stdlib_split(eval_fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, eval) documents of the stdlib corpus, with held-out text that shares no sentence with training.

    Documents are held out by the same fixed hash as `_held_out`. Docstrings repeat sentences across modules
    ("This method must be implemented by all command classes."): 15 % of the held-out sentences of a plain
    document split also occur in training documents, which inflates held-out accuracy. So each held-out document
    keeps only its sentences (compared case- and whitespace-insensitively) that no training document contains.
    """
    docs = _stdlib_texts()
    threshold = round(eval_fraction * _HASH_BUCKETS)
    in_eval = _tf().strings.to_hash_bucket_fast(list(docs), _HASH_BUCKETS).numpy() < threshold
    train = tuple(doc for doc, held in zip(docs, in_eval) if not held)
    seen = {s.lower() for doc in train for s in sentences(doc)}
    # Kept sentences are joined by blank lines, which `sentences` cuts at, so the held-out text splits into them.
    kept = ("\n\n".join(s for s in sentences(doc) if s.lower() not in seen) for doc, held in zip(docs, in_eval) if held)
    return train, tuple(doc for doc in kept if doc)


def _check_process(process_index: int, process_count: int) -> None:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")


def _show(patterns) -> str:
    if isinstance(patterns, (str, os.PathLike)):
        return repr(os.fspath(patterns))
    return repr([os.fspath(p) for p in patterns])
