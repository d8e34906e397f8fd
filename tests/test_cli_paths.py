"""What every command owes bad input, beyond `pretrain` (tests/test_cli.py): a config file that does not load, a
stray argument, an output that already exists or cannot be written are each one line and exit 2, and nothing that
was there before is replaced (the input file given as the output included)."""

from __future__ import annotations

import pytest

from _sslm_runs import assert_cli_error, sslm
from sslm_jax.errors import SslmError
from sslm_jax.output_paths import check_can_create, check_new_file

CORPUS = "the plot was fun and the actors were good .\na dull film , not very funny .\n" * 20


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("def get_config(arg=None)\n    return 1\n", "SyntaxError: expected ':'"),
        ("def get_config(arg=None):\n    return undefined_name\n", "NameError: name 'undefined_name'"),
        ("x = 1\n", "defines no get_config(arg)"),
    ],
)
def test_a_config_file_that_does_not_load_is_one_line(tmp_path, source, fragment):
    config = tmp_path / "broken.py"
    config.write_text(source)
    out = sslm("pretrain", f"--config={config}", f"--workdir={tmp_path / 'run'}", check=False)
    assert_cli_error(out, "pretrain", fragment)
    assert not (tmp_path / "run").exists()


def test_a_config_folder_is_one_line(tmp_path):
    out = sslm("pretrain", "--config=configs", f"--workdir={tmp_path / 'run'}", check=False)
    assert_cli_error(out, "pretrain", "--config=configs is a folder: name a config file")
    out = sslm("pretrain", "--config=configs/no_such_config.py", f"--workdir={tmp_path / 'run'}", check=False)
    assert_cli_error(out, "pretrain", "--config=configs/no_such_config.py: no such file")
    assert not (tmp_path / "run").exists()


def test_a_stray_argument_is_refused(tmp_path):
    out = sslm("eval", f"--workdir={tmp_path}", "extra", check=False)
    assert_cli_error(out, "eval", "unexpected argument(s) 'extra'")


def test_train_tokenizer_never_replaces_a_vocabulary_and_names_unwritable_places(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    common = ("train-tokenizer", f"--input={corpus}", "--format=lines", "--vocab-size=200")
    sslm(*common, f"--out={tmp_path / 'vocab'}")
    before = (tmp_path / "vocab" / "vocab.txt").read_text()
    out = sslm(*common, "--vocab-size=150", f"--out={tmp_path / 'vocab'}", check=False)
    assert_cli_error(out, "train-tokenizer", "already holds vocab.txt: name a new folder")
    assert (tmp_path / "vocab" / "vocab.txt").read_text() == before

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    out = sslm(*common, f"--out={blocker / 'vocab'}", check=False)
    assert_cli_error(out, "train-tokenizer", f"{blocker} is a file, not a folder")
    out = sslm(*common, "--kind=sentencepiece", f"--out={tmp_path / 'other'}", check=False)
    assert_cli_error(out, "train-tokenizer", "--kind='sentencepiece' is unknown")
    assert not (tmp_path / "other").exists()


def test_output_files_are_new_files_in_writable_folders(tmp_path):
    existing = tmp_path / "input.tsv"
    existing.write_text("sentence\tlabel\nfun\t1\n")
    with pytest.raises(SslmError, match="already exists: name a new file"):
        check_new_file(existing, setting="--output")
    with pytest.raises(SslmError, match="is a folder"):
        check_new_file(tmp_path, setting="--output")
    with pytest.raises(SslmError, match="does not exist"):
        check_new_file(tmp_path / "missing" / "out.jsonl", setting="--output")
    with pytest.raises(SslmError, match="is a file, not a folder"):
        check_new_file(existing / "out.jsonl", setting="--output")
    assert check_new_file(tmp_path / "out.jsonl", setting="--output") == tmp_path / "out.jsonl"
    assert check_can_create(tmp_path / "a" / "b", setting="--out") == tmp_path / "a" / "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.tsv"]  # the probes left nothing behind


def test_a_flag_the_command_does_not_read_is_refused(tmp_path):
    """`predict --out=F` (predict's flag is --output) would print to standard output and write nothing."""
    out = sslm("predict", f"--workdir={tmp_path}", "--input=x.tsv", f"--out={tmp_path / 'p.jsonl'}", check=False)
    assert_cli_error(out, "predict", "--out is not a flag of `sslm predict` (it takes --workdir, --input, --output")


def test_every_flag_belongs_to_a_command():
    from absl import flags

    import sslm_jax.main as main

    defined = {flag.name for flag in flags.FLAGS.get_key_flags_for_module(main)}
    assert defined == {flag for used in main.COMMAND_FLAGS.values() for flag in used}
    assert set(main.COMMAND_FLAGS) == set(main.COMMANDS)


def test_an_unknown_command_is_one_line():
    out = sslm("pretrian", "--workdir=x", check=False)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("sslm: error: unknown command 'pretrian'; commands: pretrain, finetune"), lines[0]


@pytest.mark.parametrize("args", [("--help",), ("help",), ("-h",)])
def test_help_lists_the_commands(args):
    import sslm_jax.main as main

    out = sslm(*args)
    assert out.stdout.startswith("usage: sslm <command>") and not out.stderr.strip(), out.stderr
    assert all(f"  {name} " in out.stdout for name in main.COMMANDS)


@pytest.mark.parametrize("args", [("generate", "--help"), ("help", "generate"), ("generate", "-h")])
def test_a_commands_help_lists_exactly_the_flags_it_reads(args):
    import sslm_jax.main as main

    out = sslm(*args)
    assert out.stdout.startswith("usage: sslm generate "), out.stdout
    listed = [line.split()[0][2:] for line in out.stdout.splitlines() if line.startswith("  --")]
    assert listed == list(main.COMMAND_FLAGS["generate"])
    assert "  --max-new-tokens (default: 64)" in out.stdout.splitlines()
