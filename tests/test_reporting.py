"""metrics.jsonl on resume (sslm_jax/training/reporting.py): cut back to the resumed step, a torn tail dropped."""

import json
import subprocess
import sys

from sslm_jax.training import reporting
from sslm_jax.training.reporting import MetricsWriter


def test_resume_cuts_back_to_the_step_and_drops_a_torn_tail(tmp_path, caplog):
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (2, 4, 6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 8, "lo')  # killed mid-write
    writer = MetricsWriter(tmp_path, resume_step=4, enabled=True)
    assert [r["step"] for r in writer.records] == [2, 4]
    assert "line 4 is not a complete record" in caplog.text
    writer.write(5, {"loss": 0.2})
    writer.close()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 5], "each step once, in order"


def test_tensorboard_of_a_resumed_run_marks_the_restart(tmp_path):
    """purge_step: a SessionLog START at the resumed step + 1, which TensorBoard uses to hide older events after it."""
    from tensorboardX.proto import event_pb2
    import struct

    writer = MetricsWriter(tmp_path, resume_step=4, enabled=True)
    writer.write(5, {"loss": 0.2})
    writer.close()
    (events,) = (tmp_path / "tensorboard" / "train").glob("events.out.tfevents.*")
    data, i, starts = events.read_bytes(), 0, []
    while i < len(data):
        (length,) = struct.unpack("<Q", data[i : i + 8])
        event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
        i += 12 + length + 4
        if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
            starts.append(event.step)
    assert starts == [5]


def test_the_curves_are_redrawn_only_after_new_records(tmp_path):
    writer = MetricsWriter(tmp_path, enabled=True)
    writer.write(1, {"loss": 2.0})
    writer.plot()
    png = tmp_path / "curves.png"
    first = png.stat().st_mtime_ns
    png.unlink()
    writer.plot()  # nothing new: the end of a run after its last eval
    assert not png.exists()
    writer.write(2, {"loss": 1.0})
    writer.plot()
    assert png.exists()
    resumed = MetricsWriter(tmp_path, resume_step=2, enabled=True)
    png.unlink()
    resumed.plot()  # a resumed run with nothing left to train still draws its records
    assert png.exists() and png.stat().st_mtime_ns >= first
    writer.close()


def test_redraws_during_a_run_wait_for_the_interval(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(reporting.time, "monotonic", lambda: clock[0])
    writer = MetricsWriter(tmp_path, enabled=True)
    png = tmp_path / "curves.png"
    writer.write(1, {"loss": 2.0})
    clock[0] += 59.0
    writer.plot(min_interval_s=60.0)  # an evaluation 59 s after the start: not yet
    assert not png.exists()
    clock[0] += 1.0
    writer.plot(min_interval_s=60.0)
    assert png.exists()
    png.unlink()
    writer.write(2, {"loss": 1.0})
    writer.plot(min_interval_s=60.0)  # just drawn
    assert not png.exists()
    writer.plot()  # the end of the run draws whatever is new
    assert png.exists()
    writer.close()


def test_tensorboard_events_are_written_without_importing_torch(tmp_path):
    """tensorboardX's writer imports torch when installed; training never passes it a torch tensor, and that import
    cost every run seconds (reporting._summary_writer_class). Checked in a fresh process: this one may hold torch."""
    code = (
        "import sys, pathlib; from sslm_jax.training.reporting import MetricsWriter\n"
        f"w = MetricsWriter({str(tmp_path)!r}, enabled=True); w.write(1, {{'loss': 1.0}}); w.close()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        f"assert list(pathlib.Path({str(tmp_path)!r}, 'tensorboard', 'train').glob('events.out.tfevents.*'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
