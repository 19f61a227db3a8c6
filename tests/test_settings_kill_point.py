"""dfjax.settings.kill_point: the test-only SIGKILL hook ($DFJAX_TEST_KILL_AFTER)."""

import os
import signal
import subprocess
import sys

import pytest

from dfjax import settings

_VISIT_THREE_TIMES = """
from dfjax import settings
for i in range(1, 4):
    print(f"before {i}", flush=True)
    settings.kill_point("cell.computed")
    settings.kill_point("store.put")  # another point: never counted for cell.computed
print("survived", flush=True)
"""


def _visit(kill_after: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DFJAX_TEST_KILL_AFTER"}
    if kill_after is not None:
        env["DFJAX_TEST_KILL_AFTER"] = kill_after
    return subprocess.run([sys.executable, "-c", _VISIT_THREE_TIMES], env=env,
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_process_is_killed_at_the_nth_visit_of_the_named_point():
    done = _visit("cell.computed:2")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split("\n")[:-1] == ["before 1", "before 2"]


def test_unset_or_never_reached_count_leaves_the_process_alone():
    for kill_after in (None, "cell.computed:4"):
        done = _visit(kill_after)
        assert done.returncode == 0 and done.stdout.endswith("survived\n")


@pytest.mark.parametrize("value", ["cell.computed", "cell.computed:0", "nowhere:1",
                                   "cell.computed:x"])
def test_a_malformed_setting_names_the_variable(value, monkeypatch):
    monkeypatch.setenv("DFJAX_TEST_KILL_AFTER", value)
    with pytest.raises(ValueError, match=f"DFJAX_TEST_KILL_AFTER .* got {value!r}"):
        settings.kill_point("cell.computed")
