"""The README opens with the two commands a new user types; CI runs the second."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("# 1. "))
    second = next(i for i, line in enumerate(lines) if line.startswith("# 2. "))
    return lines[first + 1], lines[second + 1]


def test_readme_commands_are_the_set_up_and_test_commands():
    run, test = _commands()
    assert "pip install -e ." in run and run.endswith("python run_all.py")
    assert "pip install -e '.[test]'" in test and test.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    out = subprocess.run(["bash", "-c", "grep -A1 '^# 2\\. ' README.md | tail -n 1"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == _commands()[1]
    assert "grep -A1 '^# 2\\. ' README.md" in (ROOT / ".ci" / "run").read_text()
