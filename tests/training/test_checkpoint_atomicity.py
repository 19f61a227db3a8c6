"""A process killed while saving a checkpoint leaves none that loads: mid-file, or with
weights but no metadata; the next save removes temporaries of processes that are gone."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from dfjax.training.checkpoints import load_checkpoint, remove_stale_temporaries, save_checkpoint

TARGET = {"params": {"w": np.zeros((64, 64), np.float32)}}
_SAVE = """
import sys
import numpy as np
from pathlib import Path
from dfjax.training.checkpoints import save_checkpoint
save_checkpoint(Path(sys.argv[1]), "abc", {"params": {"w": np.ones((64, 64), np.float32)}},
                {"history": []})
"""


@pytest.mark.parametrize("kill_after,left", [
    ("checkpoint.write:1", {"abc.msgpack.tmp"}),  # half the weights, under a temporary name
    ("checkpoint.weights:1", {"abc.msgpack"}),  # all the weights, no metadata
])
def test_a_save_killed_midway_leaves_no_checkpoint_that_loads(kill_after, left, tmp_path):
    env = {**os.environ, "DFJAX_TEST_KILL_AFTER": kill_after}
    done = subprocess.run([sys.executable, "-c", _SAVE, str(tmp_path)], env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert {p.name.rstrip("0123456789") for p in tmp_path.iterdir()} == left
    assert load_checkpoint(tmp_path, "abc", TARGET) is None


def test_temporaries_of_ended_processes_are_removed_and_live_ones_kept(tmp_path):
    child = subprocess.Popen(["sleep", "30"])
    child.kill()
    child.wait()
    dead = tmp_path / f"abc.msgpack.tmp{child.pid}"
    live = tmp_path / f"abc.json.tmp{os.getppid()}"  # a process that is running
    dead.write_bytes(b"half")
    live.write_bytes(b"{")
    assert remove_stale_temporaries(tmp_path) == [dead]
    save_checkpoint(tmp_path, "xyz", TARGET, {"history": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "xyz.json", "xyz.msgpack"]
