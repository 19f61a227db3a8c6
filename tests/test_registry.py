import pytest

from dfjax.registry import Registry, UnknownNameError


def test_register_get_names():
    r = Registry("thing")
    r.register("b", 2)
    r.register("a", 1)
    assert r.get("a") == 1
    assert r.names() == ("a", "b")
    assert "a" in r and "c" not in r


def test_duplicate_rejected():
    r = Registry("thing")
    r.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", 2)


def test_unknown_lists_known_names():
    r = Registry("attack")
    r.register("pgd", 1)
    r.register("fgsm", 2)
    with pytest.raises(UnknownNameError, match="unknown attack 'pdg'; known attacks: fgsm, pgd"):
        r.get("pdg")
