"""Provenance: every row's environment names the code revision and whether the work tree
had uncommitted changes to tracked files."""

import subprocess

from dfjax.runner.environment import environment, git_state


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_state_tells_a_clean_tree_from_a_dirty_one(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    revision, dirty = git_state(tmp_path)
    assert len(revision) >= 7 and dirty == "false"
    (tmp_path / "untracked.txt").write_text("not part of the code\n")
    assert git_state(tmp_path) == (revision, "false")
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (revision, "true")


def test_outside_a_work_tree_both_are_unknown(tmp_path):
    assert git_state(tmp_path / "missing") == ("unknown", "unknown")


def test_environment_carries_them():
    env = environment()
    assert env["git_dirty"] in ("true", "false", "unknown") and env["git_revision"]
