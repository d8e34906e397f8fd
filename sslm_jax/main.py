"""Command line: `sslm <command> [--flag=value ...]` (also `python -m sslm_jax <command>`).

Only flag parsing lives here; each command calls one library function. Bad input (`SslmError`) is printed as
one line `sslm <command>: error: ...` and exits with status 2.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import types
import warnings

from absl import app, flags
from ml_collections import config_flags

from sslm_jax.early_signals import install_for
from sslm_jax.errors import SslmError
from sslm_jax.output_paths import check_can_create, check_new_file
from sslm_jax.quick_exit import skipped_module_teardown

# name -> (one-line help, function(argv) -> None). Each command module adds itself here.
COMMANDS: dict[str, tuple[str, object]] = {}
TAKES_TEXTS = ("fill-mask", "generate")  # the commands whose positional arguments are texts; others refuse any


def command(name: str, help_text: str):
    def register(fn):
        COMMANDS[name] = (help_text, fn)
        return fn

    return register


# --- train-tokenizer ---------------------------------------------------------------------------------------
flags.DEFINE_string(
    "input", None, "train-tokenizer: glob(s) of text files (comma-separated); predict: the file; generate: prompts, "
    "one per line (\\n for a newline) or a .jsonl file's \"prompt\" fields."
)
flags.DEFINE_integer("vocab-size", 8192, "train-tokenizer: vocabulary size, special tokens included.")
flags.DEFINE_string("out", None, "the output directory to create (it must be new or empty).")
flags.DEFINE_bool("lower-case", True, "train-tokenizer: lower-case and strip accents (uncased BERT; wordpiece only).")
flags.DEFINE_string("kind", "wordpiece", "train-tokenizer: wordpiece (BERT's vocab.txt) | bpe (GPT-2's vocab.json + merges.txt).")
flags.DEFINE_string("format", "text", "train-tokenizer: text | lines | jsonl | tsv | csv.")
flags.DEFINE_string(
    "text-field", "text", "train-tokenizer / predict: jsonl field or tsv/csv column(s) with the text (predict: "
    "default the columns the model was trained on)."
)

# --- pretrain / finetune -------------------------------------------------------------------------------------
config_flags.DEFINE_config_file(
    "config", None, "pretrain / finetune: configs/NAME.py[:variant]; override fields with --config.key=value.",
    lock_config=True,
)  # fmt: skip
flags.DEFINE_string(
    "workdir", None, "the run's folder (commands that read a model also take an exported, quantized or pruned one)."
)

# --- eval / predict / fill-mask / export-hf (workdir: a run's folder; predict / fill-mask: or a Hugging Face dir) ---
flags.DEFINE_integer("eval-steps", 0, "eval: batches to evaluate; 0 = the whole eval split.")
flags.DEFINE_string("output", None, "predict: the JSON-lines file to write; default: standard output.")
flags.DEFINE_integer("top-k", 5, "fill-mask: predictions shown per [MASK]; generate: sample from the k best (default: all).")

# --- generate ----------------------------------------------------------------------------------------------------
flags.DEFINE_integer("max-new-tokens", 64, "generate: tokens to generate per prompt (it stops early at end-of-text).")
flags.DEFINE_float("temperature", 1.0, "generate: sampling temperature; 0 = greedy.")
flags.DEFINE_float("top-p", 1.0, "generate: nucleus sampling mass, in (0, 1]; 1 keeps every token.")
flags.DEFINE_integer("seed", 0, "generate: the sampling seed (the same seed gives the same text).")
flags.DEFINE_integer("num-samples", 1, "generate: continuations per prompt.")

# --- serve ----------------------------------------------------------------------------------------------------
flags.DEFINE_string("host", "127.0.0.1", "serve: the address to listen on (0.0.0.0: every interface).")
flags.DEFINE_integer("port", 8080, "serve: the TCP port (0: any free port, named in the first log line).")
flags.DEFINE_string("api-key-file", None, "serve: a file of accepted bearer keys, one per line; default: no auth.")
flags.DEFINE_integer("max-batch", 32, "serve: rows per forward pass (1 turns batching off).")
flags.DEFINE_float("max-wait-ms", 5.0, "serve: how long a batch's first row waits for more rows.")
flags.DEFINE_integer("max-body-bytes", 1 << 20, "serve: larger request bodies answer 413.")
flags.DEFINE_integer("max-rows", 64, "serve: texts / prompts per request.")
flags.DEFINE_integer("max-text-chars", 10_000, "serve: characters per text or prompt.")
flags.DEFINE_integer("max-top-k", 50, "serve: the largest fill-mask top_k a request may ask for.")
flags.DEFINE_string("routes", None, "serve: comma-separated routes to serve (classify,fill-mask,embed,generate); default: all the model supports.")
flags.DEFINE_integer("max-new-tokens-limit", 256, "serve: the largest max_new_tokens a generate request may ask for.")

FLAGS = flags.FLAGS


def _train(argv, command: str):
    from sslm_jax import tasks
    from sslm_jax.training.loop import train_and_evaluate

    if FLAGS.config is None:
        example = "bert_demo" if command == "pretrain" else "glue"
        raise SslmError(f"--config is required, e.g. --config=configs/{example}.py")
    if not FLAGS.workdir:
        raise SslmError("--workdir is required: the folder for checkpoints, metrics and the vocabulary")
    spec = tasks.get(FLAGS.config.task)
    if spec.command != command:
        raise SslmError(f"--config sets task={FLAGS.config.task!r}; use `sslm {spec.command}`")
    final = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if final:
        print("final eval: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()), flush=True)


@command("pretrain", "pretrain a model: --config=configs/X.py[:variant] --workdir=DIR [--config.key=value ...]")
def _pretrain(argv):
    _train(argv, "pretrain")


@command(
    "finetune",
    "fine-tune a classifier: --config=configs/glue.py:TASK --workdir=DIR --config.init_from=PRETRAINED [...]",
)
def _finetune(argv):
    _train(argv, "finetune")


@command("train-tokenizer", "train a vocabulary: --input=GLOB --vocab-size=N --out=DIR [--kind=wordpiece|bpe]")
def _train_tokenizer(argv):
    from sslm_jax.data import sources

    for name in ("input", "out"):
        if not FLAGS[name].value:
            raise SslmError(f"--{name} is required")
    from sslm_jax.data import tokenizers

    if FLAGS.kind not in tokenizers.BUILTIN:
        raise SslmError(f"--kind={FLAGS.kind!r} is unknown; use one of {', '.join(tokenizers.BUILTIN)}")
    kind = tokenizers.get(FLAGS.kind)
    out = check_can_create(FLAGS["out"].value, setting="--out")
    existing = [name for name in kind.files if (out / name).exists()]
    if existing:  # a run's or an exported model's vocabulary would no longer match its weights
        raise SslmError(f"--out={out} already holds {', '.join(existing)}: name a new folder (nothing is overwritten)")
    docs = sources.file_documents(
        FLAGS["input"].value, format=FLAGS["format"].value, text_field=FLAGS["text-field"].value
    )
    settings = types.SimpleNamespace(vocab_size=FLAGS["vocab-size"].value, lower_case=FLAGS["lower-case"].value)
    path = kind.train(docs, settings, out)
    print(f"wrote {', '.join(str(path.parent / name) for name in kind.files)}")


def _require_workdir() -> str:
    if not FLAGS.workdir:
        raise SslmError("--workdir is required: a run's folder (predict / fill-mask: or a Hugging Face directory)")
    return FLAGS.workdir


@command("eval", "evaluate a run's latest checkpoint (or a quantized / pruned dir) on its eval split: --workdir=DIR")
def _eval(argv):
    from sslm_jax.training.compressed_eval import evaluate_any

    step_dir, metrics = evaluate_any(_require_workdir(), eval_steps=FLAGS["eval-steps"].value)
    print(f"eval of {step_dir}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)


@command("predict", "classify texts: --workdir=DIR --input=FILE(.tsv|.csv|.jsonl|text) [--output=FILE.jsonl]")
def _predict(argv):
    from sslm_jax.inference.classify import predict_file

    if not FLAGS["input"].value:
        raise SslmError("--input is required: a .tsv / .csv / .jsonl file, or plain text with one example per line")
    given = FLAGS["text-field"].value.split(",") if FLAGS["text-field"].present else None
    if FLAGS.output:
        check_new_file(FLAGS.output, setting="--output")
    count = predict_file(_require_workdir(), FLAGS["input"].value, FLAGS.output, text_fields=given)
    if FLAGS.output:
        print(f"wrote {count} predictions to {FLAGS.output}")


@command("fill-mask", 'top predictions for each [MASK]: --workdir=DIR "the movie was [MASK] ." [--top-k=5]')
def _fill_mask(argv):
    from sslm_jax.inference.fill_mask import fill_mask_from

    results = fill_mask_from(_require_workdir(), list(argv), top_k=FLAGS["top-k"].value)
    for text, per_mask in zip(argv, results):
        print(text)
        for i, guesses in enumerate(per_mask, start=1):
            print(f"  [MASK] {i}: " + ", ".join(f"{token} {p:.3f}" for token, p in guesses), flush=True)


@command("generate", 'continue prompts: --workdir=RUN_OR_HF_DIR "prompt" [...] [--input=FILE] [--output=OUT.jsonl]')
def _generate(argv):
    from sslm_jax.inference.text_generation import generate_from

    workdir = _require_workdir()
    prompts = list(argv) + (_read_prompts(FLAGS["input"].value) if FLAGS["input"].value else [])
    if not 0.0 < FLAGS["top-p"].value <= 1.0:
        raise SslmError(f"--top-p={FLAGS['top-p'].value} must be in (0, 1]")
    if FLAGS.temperature < 0:
        raise SslmError(f"--temperature={FLAGS.temperature} must be >= 0 (0: greedy)")
    if FLAGS.output:
        check_new_file(FLAGS.output, setting="--output")
    results = generate_from(
        workdir,
        prompts,
        max_new_tokens=FLAGS["max-new-tokens"].value,
        temperature=FLAGS.temperature,
        top_k=FLAGS["top-k"].value if FLAGS["top-k"].present else 0,
        top_p=FLAGS["top-p"].value,
        seed=FLAGS.seed,
        num_samples=FLAGS["num-samples"].value,
    )
    if FLAGS.output:
        import json

        lines = [json.dumps({"prompt": p, "samples": samples}) for p, samples in zip(prompts, results)]
        pathlib.Path(FLAGS.output).write_text("".join(line + "\n" for line in lines))
        print(f"wrote {len(lines)} prompts' samples to {FLAGS.output}")
        return
    for prompt, samples in zip(prompts, results):
        for sample in samples:
            print(f"{prompt}{sample}", flush=True)
            print("---", flush=True)


def _read_prompts(path: str) -> list[str]:
    """One prompt per line of a text file; a .jsonl file's "prompt" fields."""
    from sslm_jax.data import files

    prompts = []
    with files.reading(path, setting="--input"), files.open_text(path) as f:
        if path.endswith((".jsonl", ".jsonl.gz")):
            for where, record in files.json_records(f, path):
                if not isinstance(record.get("prompt"), str):
                    raise SslmError(f"--input: {where} has no text field 'prompt'")
                prompts.append(record["prompt"])
        else:
            prompts = [line.rstrip("\n").replace("\\n", "\n") for line in f if line.strip()]
    return prompts


@command("export-hf", "write a run's model as a Hugging Face directory (BERT, ELECTRA, GPT-2): --workdir=DIR --out=DIR")
def _export_hf(argv):
    from sslm_jax.inference.export import export_hf

    if not FLAGS.out:
        raise SslmError("--out is required: the new Hugging Face model directory")
    print(f"wrote {export_hf(_require_workdir(), FLAGS.out)}")


@command("serve", "serve the model over HTTP: --workdir=RUN_OR_HF_DIR [--host=127.0.0.1 --port=8080 --api-key-file=F]")
def _serve(argv):
    from sslm_jax.inference import service

    try:
        settings = service.ServeSettings(
            max_batch=FLAGS["max-batch"].value, max_wait_ms=FLAGS["max-wait-ms"].value,
            max_body_bytes=FLAGS["max-body-bytes"].value, max_rows=FLAGS["max-rows"].value,
            max_text_chars=FLAGS["max-text-chars"].value, max_top_k=FLAGS["max-top-k"].value,
            max_new_tokens=FLAGS["max-new-tokens-limit"].value,
        )  # fmt: skip
    except ValueError as e:  # "max_new_tokens=0 must be ..." -> "--max-new-tokens-limit=0 must be ..."
        field, rest = str(e).split("=", 1)
        raise SslmError(f"--{'max-new-tokens-limit' if field == 'max_new_tokens' else field.replace('_', '-')}={rest}")
    code = service.serve(
        _require_workdir(), host=FLAGS.host, port=FLAGS.port, api_key_file=FLAGS["api-key-file"].value,
        settings=settings, routes=FLAGS.routes.split(",") if FLAGS.routes is not None else None,
    )  # fmt: skip
    sys.exit(code)


# --- quantize / prune / export (deployment; the library calls are in sslm_jax.inference) -----------------------
flags.DEFINE_string("mode", "weights", "quantize: weights (int8 storage, float matmuls) | dynamic (int8 x int8 matmuls).")
flags.DEFINE_float("sparsity", None, "prune: the fraction of the transformer layers' weights to remove, in [0, 1).")
flags.DEFINE_string("method", "magnitude", "prune: magnitude (one-shot) | movement (learned while fine-tuning).")
flags.DEFINE_string("scope", "global", "prune (magnitude): global (one threshold) | layer (each kernel alike).")
flags.DEFINE_integer(
    "steps", 0, "prune: fine-tuning steps with the mask applied (magnitude: 0 = none; movement: required)."
)


def _require_out(what: str) -> str:
    if not FLAGS.out:
        raise SslmError(f"--out is required: the new directory for the {what}")
    return FLAGS.out


@command("quantize", "int8 weights (and activations): --workdir=RUN_OR_HF_DIR --out=DIR [--mode=weights|dynamic]")
def _quantize(argv):
    from sslm_jax.inference.compress import quantize_model

    out = quantize_model(_require_workdir(), _require_out("quantized model"), mode=FLAGS.mode)
    print(f"wrote {out} (int8, {FLAGS.mode})")


@command("prune", "prune: --workdir=RUN_OR_HF_DIR --out=DIR --sparsity=S [--method=magnitude|movement] [--steps=N]")
def _prune(argv):
    from sslm_jax.training.pruning import prune_run

    if FLAGS.sparsity is None:
        raise SslmError("--sparsity is required: the fraction of weights to remove, in [0, 1)")
    out, report = prune_run(
        _require_workdir(), _require_out("pruned model"), sparsity=FLAGS.sparsity, method=FLAGS.method,
        scope=FLAGS.scope, steps=FLAGS.steps,
    )  # fmt: skip
    for name, value in report.items():
        print(f"  {name}: {value:.1%} pruned", flush=True)
    print(f"wrote {out}")


@command("export", "a portable model (jax.export): --workdir=RUN_OR_DIR --out=DIR [--format=stablehlo]")
def _export(argv):
    from sslm_jax.inference.stablehlo import export_portable

    fmt = FLAGS["format"].value if FLAGS["format"].present else "stablehlo"
    print(f"wrote {export_portable(_require_workdir(), _require_out('portable model'), format=fmt)}")


# The flags each command reads. A flag of ours given to a command that ignores it is an error (`predict --out=F`
# would otherwise print to standard output and write nothing), not a silent no-op.
_SERVE = ("host", "port", "api-key-file", "max-batch", "max-wait-ms", "max-body-bytes", "max-rows", "max-text-chars",
          "max-top-k", "routes", "max-new-tokens-limit")  # fmt: skip
COMMAND_FLAGS = {
    "pretrain": ("config", "workdir"),
    "finetune": ("config", "workdir"),
    "train-tokenizer": ("input", "vocab-size", "out", "lower-case", "kind", "format", "text-field"),
    "eval": ("workdir", "eval-steps"),
    "predict": ("workdir", "input", "output", "text-field"),
    "fill-mask": ("workdir", "top-k"),
    "generate": (
        "workdir", "input", "output", "top-k", "max-new-tokens", "temperature", "top-p", "seed", "num-samples"
    ),  # fmt: skip
    "export-hf": ("workdir", "out"),
    "serve": ("workdir", *_SERVE),
    "quantize": ("workdir", "out", "mode"),
    "prune": ("workdir", "out", "sparsity", "method", "scope", "steps"),
    "export": ("workdir", "out", "format"),
}


def _flags_problem(name: str) -> str | None:
    """The first of our flags set on the command line that `sslm <name>` does not read, as an error line."""
    ours = sorted({flag for used in COMMAND_FLAGS.values() for flag in used})
    stray = [flag for flag in ours if FLAGS[flag].present and flag not in COMMAND_FLAGS[name]]
    if not stray:
        return None
    takes = ", ".join(f"--{flag}" for flag in COMMAND_FLAGS[name])
    return f"--{stray[0]} is not a flag of `sslm {name}` (it takes {takes})"


def _usage() -> str:
    lines = ["usage: sslm <command> [--flag=value ...]", "", "commands:"]
    lines += [f"  {name:16s} {help_text}" for name, (help_text, _) in COMMANDS.items()]
    return "\n".join(lines)


_HELP_WORDS = ("help", "-h", "--help", "-help", "--helpshort", "--helpfull")


def _help_text(args: list[str]) -> str | None:
    """What `sslm help [command]`, `sslm --help` or `sslm <command> --help` prints (absl's own --help would list
    only its flags); None when help was not asked for."""
    if not any(a in _HELP_WORDS for a in args[:1]) and not any(a in _HELP_WORDS[1:] for a in args):
        return None
    name = next((a for a in args if a in COMMANDS), None)
    if name is None:
        return _usage() + "\n\n`sslm <command> --help` lists a command's flags."
    help_text = COMMANDS[name][0]
    lines = [f"usage: sslm {name} [--flag=value ...]", "", f"{help_text[:1].upper()}{help_text[1:]}.", "", "flags:"]
    for flag in COMMAND_FLAGS[name]:
        default = FLAGS[flag].default
        shown = "" if default is None or flag == "config" else f" (default: {FLAGS[flag].default_as_str.strip(chr(39))})"
        lines.append(f"  --{flag}{shown}")
        lines.append(f"      {FLAGS[flag].help}")
    return "\n".join(lines)


def _main(argv):
    if len(argv) < 2:
        print(_usage(), file=sys.stderr)
        sys.exit(2)
    if argv[1] not in COMMANDS:  # one line, like every other bad input; `sslm` alone prints the usage
        print(f"sslm: error: unknown command {argv[1]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    name = argv[1]
    try:
        problem = _flags_problem(name)
        if problem:
            raise SslmError(problem)
        if argv[2:] and name not in TAKES_TEXTS:
            raise SslmError(f"unexpected argument(s) {' '.join(map(repr, argv[2:]))}: `sslm {name}` takes --flags only")
        COMMANDS[name][1](argv[2:])
    except SslmError as e:
        print(f"sslm {name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:  # Ctrl-C: the trainer saved first (preemption.Interrupted says what it saved)
        print(f"sslm {name}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        sys.exit(130)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, except that a bad flag or `--config` (a missing file, a failing get_config, a field the
    locked config lacks) ends the program like any bad input: one line `sslm <command>: error: ...`, exit 2 (absl
    would print a traceback or a multi-line report)."""
    try:
        args = FLAGS(argv)
        if FLAGS.config is not None:
            FLAGS.config.keys()  # a config file that failed to load raises its deferred error on first use
        return args
    except flags.Error as e:
        # A failing get_config arrives with its traceback inside the message: keep the flag and the final line.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        message = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    except (AttributeError, KeyError) as e:  # config_flags: `--config.<path>=` names no field of the config
        message = _config_file_message(argv, e) if "get_config" in str(e) else _unknown_field_message(e, argv)
    except Exception as e:  # noqa: BLE001 - a config file that does not load: a SyntaxError, a NameError, ...
        if not _config_spec(argv):
            raise
        message = _config_file_message(argv, e)
    command = next((a for a in argv[1:] if not a.startswith("-")), None)
    print(f"sslm{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _config_spec(argv: list[str]) -> str | None:
    return next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)


def _config_file_message(argv: list[str], error: Exception) -> str:
    """One line for a --config file that could not be loaded: what is wrong with it, without the traceback."""
    spec = _config_spec(argv) or ""
    path = pathlib.Path(spec.split(":", 1)[0])
    if path.is_dir():
        return f"--config={spec} is a folder: name a config file, e.g. --config={path / 'bert_demo.py'}"
    if not path.is_file():
        return f"--config={spec}: no such file (configs live in configs/NAME.py)"
    if "get_config" in str(error):
        return f"--config={spec}: {path} defines no get_config(arg) returning an ml_collections.ConfigDict"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"--config={spec} could not be loaded: {type(error).__name__}: {lines[-1] if lines else ''}"


# Fields that older configs and command lines set and that no longer exist -> what to say instead of "no field".
_REPLACED_FIELDS = {
    "data.whole_word_masking": "data.whole_word_masking was replaced by data.masking='word' (False: 'token')",
}


def _unknown_field_message(error: Exception, argv: list[str]) -> str:
    """E.g. '--config.batch_sizee: the config has no field 'batch_sizee'; Did you mean "batch_size" ...?', or for a
    field in `_REPLACED_FIELDS`, what replaced it."""
    text = error
    while isinstance(text, (AttributeError, KeyError)) and text.args:
        text = text.args[0]  # config_flags wraps ml_collections' KeyError (and its did-you-mean) in an AttributeError
    first, *rest = str(text).strip().splitlines() or [""]
    field = first.strip("'\"")
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    flag = next((o for o in overrides if field in o.split(".")[1:]), "--config")
    replaced = _REPLACED_FIELDS.get(flag.removeprefix("--config."))
    if replaced:
        return f"{flag}: {replaced} (every field: configs/base.py)"
    hint = " ".join(line.strip() for line in rest)
    return f"{flag}: the config has no field {field!r}{'; ' + hint if hint else ''} (every field: configs/base.py)"


def run():
    """Console-script entry point."""
    install_for(sys.argv)  # `python -m sslm_jax` installed it already; the `sslm` script gets it here
    from sslm_jax.config_loading import config_dir_on_path

    # Config files import their siblings (`from configs import base`), from any directory, once absl loads them.
    for arg in sys.argv[1:]:
        if arg.startswith("--config="):
            config_dir_on_path(arg.split("=", 1)[1])
    # TensorFlow's C++ start-up chatter is quieted where it is imported: sslm_jax/data/tf_setup.py.
    # A save that failed (a full disk) leaves Orbax's un-awaited coroutine behind; Python would warn about it at
    # exit, after the one-line error.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    help_text = _help_text(sys.argv[1:])
    if help_text is not None:
        print(help_text)
        sys.exit(0)
    app.call_after_init(_quiet_library_info)
    with skipped_module_teardown():  # 2.6-3.3 s of every command that imported TensorFlow (sslm_jax/quick_exit.py)
        app.run(_main, flags_parser=_parse_flags)


class _LibraryInfoFilter(logging.Filter):
    """Drops INFO records of Orbax (one per array write) and of jax's backend probing: the run's own INFO lines stay
    readable, and a one-line error is not preceded by "Unable to initialize backend 'tpu'". Also drops the
    traceback Orbax logs when a background save fails for lack of disk space: the same error reaches the main
    thread, which reports it as one line (`training/disk_full.py`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.pathname.endswith("xla_bridge.py"):  # "Unable to initialize backend 'tpu'" on machines without one
            return record.levelno >= logging.WARNING
        if "orbax" not in record.pathname:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            from sslm_jax.training.disk_full import disk_full_error

            return disk_full_error(record.exc_info[1]) is None
        return record.levelno >= logging.WARNING


def _quiet_library_info():
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_handler().addFilter(_LibraryInfoFilter())
