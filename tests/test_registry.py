import pytest

from dfjax.registry import Entry, OptionError, Registry, UnknownNameError


def test_register_get_names():
    r = Registry("thing")
    b, a = Entry(description="b"), Entry(description="a")
    r.register("b", b)
    r.register("a", a)
    assert r.get("a") is a
    assert r.names() == ("a", "b") and r.items() == [("a", a), ("b", b)]
    assert "a" in r and "c" not in r


def test_duplicate_and_non_entries_rejected():
    r = Registry("thing")
    r.register("a", Entry())
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", Entry())
    with pytest.raises(TypeError, match="must be a dfjax.registry.Entry"):
        r.register("b", 2)


def test_unknown_lists_known_names():
    r = Registry("attack")
    r.register("pgd", Entry())
    r.register("fgsm", Entry())
    with pytest.raises(UnknownNameError, match="unknown attack 'pdg'; known attacks: fgsm, pgd"):
        r.get("pdg")


def _positive(options):
    if options["steps"] < 1:
        raise ValueError(f"option steps must be >= 1, got {options['steps']}")


def test_resolve_fills_defaults_and_names_the_valid_options():
    r = Registry("attack")
    r.register("pgd", Entry(options={"steps": 10, "loss": "ce"}, check=_positive,
                            option_prefixes=("source.",)))
    assert r.resolve("pgd", {}) == {"steps": 10, "loss": "ce"}
    assert r.resolve("pgd", {"steps": 3, "source.x": 1}) == {"steps": 3, "loss": "ce",
                                                               "source.x": 1}
    with pytest.raises(OptionError, match=r"attack 'pgd' has no option\(s\) \['stps'\]; "
                                          r"its options: loss='ce', steps=10, source\.\*"):
        r.resolve("pgd", {"stps": 3})
    with pytest.raises(OptionError, match="attack 'pgd' option steps must be >= 1, got 0"):
        r.resolve("pgd", {"steps": 0})
    with pytest.raises(UnknownNameError):
        r.resolve("pdg", {})
