"""dfjax.settings: explicit values win, then the environment, then the defaults."""

import os
import re
from pathlib import Path

import pytest

from dfjax import settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("resolve,variable,default", [
    (settings.data_dir, "DFJAX_DATA_DIR", Path.home() / ".cache" / "dfjax" / "data"),
    (settings.checkpoint_dir, "DFJAX_CHECKPOINT_DIR",
     Path.home() / ".cache" / "dfjax" / "checkpoints"),
])
def test_directories_explicit_then_environment_then_default(resolve, variable, default,
                                                           monkeypatch, tmp_path):
    monkeypatch.delenv(variable, raising=False)
    assert resolve() == default
    monkeypatch.setenv(variable, "")
    assert resolve() == default  # an empty setting is no setting
    monkeypatch.setenv(variable, str(tmp_path / "env"))
    assert resolve() == tmp_path / "env"
    assert resolve(tmp_path / "given") == tmp_path / "given"
    assert resolve(str(tmp_path / "given")) == tmp_path / "given"


def test_library_defaults_resolve_through_settings(monkeypatch, tmp_path):
    from dfjax.data.base import default_data_dir
    from dfjax.training.checkpoints import default_checkpoint_dir

    monkeypatch.setenv("DFJAX_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("DFJAX_CHECKPOINT_DIR", str(tmp_path / "c"))
    assert default_data_dir() == tmp_path / "d"
    assert default_checkpoint_dir() == tmp_path / "c"


def test_cpu_device_count(monkeypatch):
    monkeypatch.delenv("DFJAX_CPU_DEVICES", raising=False)
    assert settings.cpu_device_count() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("DFJAX_CPU_DEVICES", "3")
    assert settings.cpu_device_count() == 3
    assert settings.cpu_device_count(5) == 5
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        settings.cpu_device_count(0)


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_cpu_device_count_names_the_variable_for_a_bad_setting(value, monkeypatch):
    monkeypatch.setenv("DFJAX_CPU_DEVICES", value)
    with pytest.raises(ValueError, match=f"DFJAX_CPU_DEVICES .* got {value!r}"):
        settings.cpu_device_count()


def test_only_settings_reads_the_environment():
    """The config layer is the only reader of os.environ in dfjax/ (ISSUE 12)."""
    readers = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "dfjax").rglob("*.py")
                     if re.search(r"os\.environ|getenv", path.read_text()))
    assert readers == ["dfjax/settings.py"]


def test_compile_cache_dir_explicit_env_default_and_off(monkeypatch, tmp_path):
    """An explicit folder wins; else $DFJAX_COMPILE_CACHE_DIR; "off" gives None (no cache);
    unset gives ~/.cache/dfjax/xla."""
    from dfjax import settings

    monkeypatch.setenv("DFJAX_COMPILE_CACHE_DIR", str(tmp_path / "env"))
    assert settings.compile_cache_dir(tmp_path / "x") == tmp_path / "x"
    assert settings.compile_cache_dir() == tmp_path / "env"
    monkeypatch.setenv("DFJAX_COMPILE_CACHE_DIR", "off")
    assert settings.compile_cache_dir() is None
    assert settings.compile_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("DFJAX_COMPILE_CACHE_DIR")
    assert settings.compile_cache_dir() == settings.CACHE_DIR / "xla"
