"""sslm_jax.data.files: the one file reader (globs, gfile URLs, .gz, tsv/csv/jsonl records) and its errors."""

import gzip
import pathlib
import subprocess
import sys

import pytest

from sslm_jax.data import files
from sslm_jax.errors import ConfigError, DataError

tf = pytest.importorskip("tensorflow")


def _tree(root: pathlib.Path) -> pathlib.Path:
    """root/a.tsv, root/x/b.tsv.gz, root/x/y/c.tsv and a folder named like a file, root/x/d.tsv/."""
    (root / "x" / "y").mkdir(parents=True)
    (root / "x" / "d.tsv").mkdir()
    (root / "a.tsv").write_text("t\n")
    (root / "x" / "b.tsv.gz").write_bytes(gzip.compress(b"t\n"))
    (root / "x" / "y" / "c.tsv").write_text("t\n")
    return root


@pytest.mark.parametrize("url", [False, True], ids=["local", "file-url"])
def test_recursive_globs_locally_and_through_gfile(tmp_path, url):
    root = _tree(tmp_path)
    base = f"file://{root}" if url else str(root)  # file:// goes through tf.io.gfile, as gs:// does
    found = files.expand(f"{base}/**/*.tsv*")
    assert found == [f"{base}/a.tsv", f"{base}/x/b.tsv.gz", f"{base}/x/y/c.tsv"]  # ** matches no folder too
    several = f"{base}/x/**/c.tsv, {base}/*/*.gz, {base}/x/y/*"  # sorted per glob, each file once
    assert files.expand(several) == [f"{base}/x/y/c.tsv", f"{base}/x/b.tsv.gz"]
    assert files.expand([f"{base}/x/*"]) == [f"{base}/x/b.tsv.gz"]  # the folder d.tsv is left out


def test_ram_filesystem_globs_and_reads_gz():
    """TF's in-memory ram:// filesystem stands in for gs:// (its listing does not recurse, so no ** here)."""
    with tf.io.gfile.GFile("ram://sslm_files/a.tsv", "w") as f:
        f.write("\ufefftext\tlabel\r\nfine\t1\n")
    with tf.io.gfile.GFile("ram://sslm_files/b.tsv.gz", "wb") as f:
        f.write(gzip.compress("text\tlabel\n\nzipped \"quote\tfine\n".encode()))
    paths = files.expand("ram://sslm_files/*.tsv*")
    assert paths == ["ram://sslm_files/a.tsv", "ram://sslm_files/b.tsv.gz"]
    read = []
    for path in paths:
        with files.reading(path), files.open_text(path) as f:
            read += list(files.records(f, path, "tsv"))
    assert read == [
        ("ram://sslm_files/a.tsv:2", {"text": "fine", "label": "1"}),  # byte-order mark and \r\n dropped
        ("ram://sslm_files/b.tsv.gz:3", {"text": 'zipped "quote', "label": "fine"}),
    ]
    assert files.is_file("ram://sslm_files/a.tsv") and not files.is_file("ram://sslm_files/nothing.tsv")


def test_glob_errors_name_the_setting(tmp_path):
    (tmp_path / "a.tsv").write_text("t\n")
    with pytest.raises(DataError, match=r"^data.eval_files: glob '.*/nope\*.tsv' matches no file$"):
        files.expand(f"{tmp_path}/a.tsv,{tmp_path}/nope*.tsv", setting="data.eval_files")
    with pytest.raises(DataError, match=r"^glob 'ram://sslm_files/none-\*' matches no file$"):
        files.expand("ram://sslm_files/none-*")
    with pytest.raises(ConfigError, match="^data.train_files is empty"):
        files.expand(" , ", setting="data.train_files")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not gzip at all", r"^data.train_files: cannot read .*/a.tsv.gz: Not a gzipped file"),
        (gzip.compress(b"text\tlabel\nfine\t1\n")[:-12], r"cannot read .*/a.tsv.gz: Compressed file ended"),
        (gzip.compress(b"text\tlabel\ncaf\xe9\t1\n"), r"^data.train_files: .*/a.tsv.gz is not UTF-8 text \(byte 14"),
    ],
    ids=["not-gzip", "truncated", "latin-1"],
)
def test_read_errors_are_one_line(tmp_path, content, match):
    path = tmp_path / "a.tsv.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        with files.reading(path, setting="data.train_files"), files.open_text(path) as f:
            list(files.records(f, str(path), "tsv"))
    assert "\n" not in str(e.value)


def test_records_of_each_format():
    assert list(files.records(['a,b\n', '"x, y",2\n', "\n"], "f.csv", "csv")) == [("f.csv:2", {"a": "x, y", "b": "2"})]
    assert list(files.records(["\n", '{"a": 1}\n'], "f.jsonl", "jsonl")) == [("f.jsonl:2", {"a": 1})]
    header, rows = files.table_reader([" a \tb\n", '"x\ty\n'], "tsv", "f.tsv")
    assert header == ["a", "b"] and list(rows) == [['"x', "y"]]  # tsv: quotes are text
    # A line of spaces is blank (it was one field where the header has 2); a repeated column name is refused (the
    # pretraining reader took the first, fine-tuning's the last).
    assert list(files.records(["a\tb\n", "   \n", "1\t2\n"], "f.tsv", "tsv")) == [("f.tsv:3", {"a": "1", "b": "2"})]
    with pytest.raises(DataError, match=r"^f.csv: the header names column 'text' twice; give each column its own"):
        list(files.records(["text,text,label\n", "x,y,1\n"], "f.csv", "csv"))
    with pytest.raises(DataError, match=r"^f.tsv:3: 3 tsv fields where the header has 2$"):
        list(files.records(["a\tb\n", "1\t2\n", "1\t2\t3\n"], "f.tsv", "tsv"))
    with pytest.raises(DataError, match=r"^f.jsonl:1 is not a JSON object \(Expecting value\)"):
        list(files.records(["nope\n"], "f.jsonl", "jsonl"))
    with pytest.raises(DataError, match=r"^f.jsonl:1 is not a JSON object; "):
        list(files.records(["[1, 2]\n"], "f.jsonl", "jsonl"))


def test_local_files_do_not_import_tensorflow(tmp_path):
    """A mistyped local path is reported before TensorFlow's slow start-up."""
    code = (
        "import sys; from sslm_jax.data import files; from sslm_jax.errors import DataError\n"
        f"try: files.expand({str(tmp_path / 'nothing*')!r})\n"
        "except DataError: pass\n"
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(__file__).parents[1])
