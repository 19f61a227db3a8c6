"""Code fingerprints: comments, docstrings and formatting keep them; code changes them."""

import pytest

from dfjax import fingerprint

SOURCE = '''"""A module."""

def double(x):
    """Twice x."""
    return 2 * x  # a comment
'''


def test_comments_docstrings_and_formatting_keep_the_normalised_source():
    reworded = SOURCE.replace("A module.", "Another text.").replace("# a comment", "# other")
    reformatted = reworded.replace("return 2 * x", "return (2*x)")
    assert fingerprint.normalised_source(reformatted) == fingerprint.normalised_source(SOURCE)


def test_a_code_change_changes_the_normalised_source():
    changed = SOURCE.replace("2 * x", "3 * x")
    assert fingerprint.normalised_source(changed) != fingerprint.normalised_source(SOURCE)


def test_a_source_that_does_not_parse_is_a_clear_error():
    with pytest.raises(ValueError, match="broken.py does not parse"):
        fingerprint.normalised_source("def (:", name="broken.py")


def _patched(monkeypatch, module, edit):
    original = fingerprint.read_source
    monkeypatch.setattr(fingerprint, "read_source",
                        lambda m: edit(original(m)) if m == module else original(m))
    fingerprint.clear_cache()


def test_fingerprint_follows_imports_and_sees_a_code_change_there(monkeypatch):
    """dfjax.training.loop imports dfjax.losses: changing losses' code changes loop's
    fingerprint; adding a comment to it does not."""
    fingerprint.clear_cache()
    assert "dfjax.losses" in fingerprint.scope(["dfjax.training.loop"])
    before = fingerprint.code_fingerprint(["dfjax.training.loop"])
    _patched(monkeypatch, "dfjax.losses", lambda s: s + "\n# a comment only\n")
    assert fingerprint.code_fingerprint(["dfjax.training.loop"]) == before
    _patched(monkeypatch, "dfjax.losses", lambda s: s + "\nEXTRA = 1\n")
    assert fingerprint.code_fingerprint(["dfjax.training.loop"]) != before
    monkeypatch.undo()
    fingerprint.clear_cache()


def test_stop_prefixes_and_naming_modules_are_not_followed():
    modules = fingerprint.scope(["dfjax.training.loop"], stop=["dfjax.losses"])
    assert "dfjax.training.loop" in modules
    assert "dfjax.losses" not in modules and "dfjax.config" not in modules


def test_an_unknown_module_is_named_in_the_error():
    with pytest.raises(ValueError, match="'dfjax.nope' is not a module of dfjax"):
        fingerprint.code_fingerprint(["dfjax.nope"])
