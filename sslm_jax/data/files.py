"""Reading the user's files, local or any `tf.io.gfile` URL (gs://, s3://, ram://): the one reader of sslm_jax.

    paths = expand("data/**/*.tsv.gz,gs://bucket/extra/*.tsv", setting="data.train_files")
    with reading(paths[0], setting="data.train_files"), open_text(paths[0]) as f:
        for where, record in records(f, paths[0], "tsv"):   # ("data/a.tsv.gz:2", {"sentence": ..., "label": ...})
            ...

Pretraining sources (`sources.py`), fine-tuning files (`labelled_files.py`) and `sslm predict`
(`inference/classify.py`) all read through these functions, so they accept the same paths and formats:
  patterns  comma-separated globs; `**` is recursive (zero or more folders), locally and in URLs; each pattern must
            match at least one file; the result is sorted per pattern, without repeats.
  opening   a name ending in .gz is decompressed; text is UTF-8, a leading byte-order mark is dropped.
  records   tsv: a header row naming the columns, fields taken literally (no quoting: GLUE style); csv: the same
            with "," and "..." quoting (RFC 4180); jsonl: one JSON object per line. Blank lines are skipped.
            Pretraining decodes tsv/csv in the input graph, more strictly: one record per line, and quotes only
            around a whole field (`he said "hi"` unquoted, accepted here, stops the pipeline naming its file).
Errors are one-line `DataError`s naming the file (and line), prefixed with the setting when one is given.

TensorFlow is imported only for URLs, so a mistyped local path is reported before its slow start-up.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import glob
import gzip
import io
import json
import os
import re
import zlib
from typing import Any, Iterable, Iterator

from sslm_jax.errors import ConfigError, DataError

TABLE_FORMATS = ("tsv", "csv")
RECORD_FORMATS = ("tsv", "csv", "jsonl")
_MAGIC = re.compile(r"[*?[]")


def import_tensorflow():
    """TensorFlow, imported on first use, quietly and kept off the accelerators (see `tf_setup`)."""
    from sslm_jax.data.tf_setup import tf

    return tf


def is_url(path: str | os.PathLike) -> bool:
    """True for paths read through `tf.io.gfile` ("gs://b/x", "ram://x"); False for local paths."""
    return "://" in os.fspath(path)


# --- Patterns -----------------------------------------------------------------------------------------------------


def expand(patterns: str | os.PathLike | Iterable[str | os.PathLike], *, setting: str = "") -> list[str]:
    """Globs -> file paths: sorted per pattern, de-duplicated, folders left out; each glob must match a file.

    Args:
      patterns: a glob, comma-separated globs, or a list of globs / paths; local or `tf.io.gfile` URLs.
      setting: the config setting the patterns came from, named in error messages ("data.train_files").

    Example: "c/*.txt, c/**/*.gz" with files c/a.txt, c/x/b.gz and c/x/y/z.gz -> ["c/a.txt", "c/x/b.gz", "c/x/y/z.gz"].
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = os.fspath(patterns).split(",")
    patterns = [p for p in (os.fspath(p).strip() for p in patterns) if p]
    if not patterns:
        raise ConfigError(f"{setting or 'the list of input files'} is empty; give a glob such as corpus/*.txt")
    prefix = f"{setting}: " if setting else ""
    found: dict[str, None] = {}  # insertion-ordered set
    for pattern in patterns:
        if is_url(pattern):
            matches = _url_glob(pattern, prefix)
        else:
            matches = [m for m in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(m)]
        if not matches:
            raise DataError(f"{prefix}glob {pattern!r} matches no file")
        found.update(dict.fromkeys(sorted(matches)))
    return list(found)


def _url_glob(pattern: str, prefix: str) -> list[str]:
    """Files matching a URL glob; `tf.io.gfile.glob` does not recurse, so `**` walks the folder above it."""
    tf = import_tensorflow()
    gfile = tf.io.gfile
    try:
        if "**" not in pattern:
            return [m for m in gfile.glob(pattern) if not gfile.isdir(m)]
        scheme, _, rest = pattern.partition("://")
        parts = rest.split("/")
        fixed = next(i for i, part in enumerate(parts) if _MAGIC.search(part))
        root = f"{scheme}://{'/'.join(parts[:fixed])}"
        return [
            path
            for folder, _, names in gfile.walk(root)
            for path in (f"{folder.rstrip('/')}/{name}" for name in names)
            if _match_parts(parts[fixed:], path[len(root) :].strip("/").split("/"))
        ]
    except tf.errors.OpError as e:
        raise DataError(f"{prefix}cannot list {pattern!r}: {e.message}") from None


def _match_parts(pattern: list[str], parts: list[str]) -> bool:
    """Path components against glob components, "**" standing for any number of them (zero included)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match_parts(pattern[1:], parts[1:])


def is_file(path: str | os.PathLike) -> bool:
    """Whether `path` (local or URL) names an existing file, not a folder."""
    if not is_url(path):
        return os.path.isfile(path)
    gfile = import_tensorflow().io.gfile
    return gfile.exists(os.fspath(path)) and not gfile.isdir(os.fspath(path))


# --- Opening ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_binary(path: str | os.PathLike) -> Iterator[io.BufferedIOBase]:
    """A binary stream of the file's bytes, decompressed for a name ending in .gz."""
    path = os.fspath(path)
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(io.BufferedReader(_GFileReader(path)) if is_url(path) else open(path, "rb"))
        if path.endswith(".gz"):
            f = stack.enter_context(gzip.GzipFile(fileobj=f))
        yield f


@contextlib.contextmanager
def open_text(path: str | os.PathLike, *, errors: str = "strict") -> Iterator[io.TextIOBase]:
    """The file as UTF-8 text (.gz decompressed), without a leading byte-order mark, line endings kept for csv.

    errors="replace" turns bytes that are not UTF-8 into U+FFFD instead of raising UnicodeDecodeError.
    """
    with open_binary(path) as f:
        # utf-8-sig drops a byte-order mark (some GLUE files start with one) that would otherwise join the first
        # column's name; newline="" lets the csv module see quoted line breaks.
        with io.TextIOWrapper(f, encoding="utf-8-sig", errors=errors, newline="") as text:
            yield text


class _GFileReader(io.RawIOBase):
    """A `tf.io.gfile.GFile` as a raw stream (GFile lacks `readable`), its errors turned into OSError."""

    def __init__(self, path: str):
        self._tf = import_tensorflow()
        self._file = self._tf.io.gfile.GFile(path, "rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._file.read(len(buffer))
        except self._tf.errors.OpError as e:
            raise OSError(e.message) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


@contextlib.contextmanager
def reading(path: str | os.PathLike, *, setting: str = ""):
    """Turns a failure to read `path` (missing, not UTF-8, a broken .gz) into a one-line DataError naming it."""
    prefix = f"{setting}: " if setting else ""
    try:
        yield
    except UnicodeDecodeError as e:
        raise DataError(f"{prefix}{os.fspath(path)} is not UTF-8 text (byte {e.start} of a read block)") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{prefix}cannot read {os.fspath(path)}: {e}") from None


# --- Records ------------------------------------------------------------------------------------------------------


def table_reader(lines: Iterable[str], fmt: str, path: str) -> tuple[list[str], Iterator[list[str]]]:
    """(column names from the header row, stripped; a csv reader positioned on the first data row).

    tsv is read without quote handling, as GLUE's own files are (their sentences contain bare quotes).
    Example: ["a\\tb\\n", '"x\\ty\\n'] with "tsv" -> (["a", "b"], reader yielding ['"x', "y"]).
    A column name given twice is a DataError: which of the two a reader took would be arbitrary.
    """
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"table format {fmt!r} is not one of {TABLE_FORMATS}")
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: the header names column {repeated[0]!r} twice; give each column its own name")
    return header, reader


def table_records(lines: Iterable[str], path: str, fmt: str) -> Iterator[tuple[str, dict[str, str]]]:
    """("path:line", {column: value}) for each data row of a tsv/csv file whose first row names the columns."""
    header, reader = table_reader(lines, fmt, path)
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line, or one of spaces only
        where = f"{path}:{reader.line_num}"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} {fmt} fields where the header has {len(header)}")
        yield where, dict(zip(header, row))


def json_records(lines: Iterable[str], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """("path:line", object) for each non-blank line of a JSON-lines file; each must hold a JSON object."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where} is not a JSON object ({e.msg}); jsonl holds one per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{where} is not a JSON object; jsonl holds one per line")
        yield where, record


def records(lines: Iterable[str], path: str, fmt: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The records of a tsv, csv or jsonl file: `table_records` or `json_records`."""
    if fmt == "jsonl":
        return json_records(lines, path)
    return table_records(lines, path, fmt)
