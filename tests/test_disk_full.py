"""Full-disk errors (sslm_jax/training/disk_full.py) in the shapes they arrive in, and the one line they become."""

import errno

import pytest

from sslm_jax.training import disk_full


def test_errno_and_wrapped_texts_are_recognised(tmp_path):
    assert disk_full.disk_full_error(OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl")) == (
        "no space left", "/w/metrics.jsonl")  # fmt: skip
    try:
        try:
            raise ValueError("Error writing local file \"/w/checkpoints/9.orbax-checkpoint-tmp/d/ab\": [OS error: "
                             "No space left on device] [source locations='tensorstore/...']")  # fmt: skip
        except ValueError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        found = disk_full.disk_full_error(outer, under="/w")
    assert found == ("no space left", "/w/checkpoints/9.orbax-checkpoint-tmp/d/ab")
    assert disk_full.disk_full_error(OSError(errno.EFBIG, "File too large"))[0] == "file size limit reached"
    assert disk_full.disk_full_error(ValueError("shape mismatch")) is None


def test_reported_turns_it_into_one_line_and_lets_others_through(tmp_path):
    stopped = []
    with pytest.raises(disk_full.DiskFullError, match=f"no space left writing {tmp_path}/metrics.jsonl"):
        with disk_full.reported(tmp_path, on_failure=lambda: stopped.append(True)):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.jsonl"))
    assert stopped == [True]
    with pytest.raises(KeyError):
        with disk_full.reported(tmp_path):
            raise KeyError("not a disk error")


def test_a_full_disk_in_tensorboards_writer_thread_is_one_error_in_the_main_thread(tmp_path, monkeypatch, capfd):
    """tensorboardX writes events from its own thread: a full disk there must neither print a thread traceback nor
    end TensorBoard logging silently."""
    import threading
    import time

    from tensorboardX import record_writer

    from sslm_jax.training import reporting

    events = tmp_path / "tensorboard" / "train" / "events.out"
    hook = threading.excepthook
    with pytest.raises(disk_full.DiskFullError, match=f"no space left writing {events}"):
        with disk_full.reported(tmp_path):
            writer = reporting.MetricsWriter(tmp_path, resume_step=0, enabled=True)
            writer.write(1, {"loss": 1.0})  # the event file exists and works

            def full(self, data):
                raise OSError(errno.ENOSPC, "No space left on device", str(events))

            monkeypatch.setattr(record_writer.RecordWriter, "write", full)
            reached = []
            for step in range(2, 200):  # the thread meets the full disk; a later write raises it here
                writer.write(step, {f"metric_{i}": 1.0 for i in range(40)})  # more events than tensorboardX's queue
                reached.append(step)
                time.sleep(0.02)
    assert len(reached) < 150  # raised by a write, not only when the run ends
    assert threading.excepthook is hook
    assert "Traceback" not in capfd.readouterr().err
