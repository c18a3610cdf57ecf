"""Tests for mcit.registry: registration, lookup and the did-you-mean errors."""

from __future__ import annotations

import pytest

from mcit.errors import UserError
from mcit.registry import Registry


@pytest.fixture
def fruits() -> Registry:
    registry: Registry = Registry("fruit")

    @registry.register("apple", help="A red fruit.")
    def apple():
        return "apple"

    @registry.register("banana")
    def banana():
        """Yellow and long.

        More details that are not part of the help line.
        """
        return "banana"

    @registry.register("cherry")
    def cherry():
        return "cherry"

    return registry


def test_register_returns_object_and_get_finds_it(fruits):
    def date():
        return "date"

    returned = fruits.register("date")(date)
    assert returned is date
    assert fruits.get("date") is date
    assert fruits.get("apple")() == "apple"
    assert fruits.get("banana")() == "banana"


def test_names_contains_len_and_iteration_are_sorted(fruits):
    assert fruits.names() == ["apple", "banana", "cherry"]
    assert list(fruits) == ["apple", "banana", "cherry"]
    assert len(fruits) == 3
    assert "banana" in fruits
    assert "durian" not in fruits
    assert 3 not in fruits


def test_help_uses_explicit_text_or_first_docstring_line(fruits):
    assert fruits.help("apple") == "A red fruit."
    assert fruits.help("banana") == "Yellow and long."
    assert fruits.help("cherry") == ""


def test_duplicate_registration_raises_value_error_and_keeps_original(fruits):
    original = fruits.get("apple")
    with pytest.raises(ValueError, match="'apple' is registered twice"):
        fruits.register("apple")(lambda: "impostor")
    assert fruits.get("apple") is original
    assert len(fruits) == 3


def test_unknown_name_with_close_typo_suggests_it(fruits):
    with pytest.raises(UserError) as info:
        fruits.get("banan")
    message = str(info.value)
    assert "Unknown fruit 'banan'" in message
    assert "Did you mean 'banana'?" in message
    assert "Valid: apple, banana, cherry" in message
    assert "\n" not in message


def test_unknown_name_without_close_match_lists_valid_names_only(fruits):
    with pytest.raises(UserError) as info:
        fruits.get("zzzzzzzz")
    message = str(info.value)
    assert "Did you mean" not in message
    assert message.endswith("Valid: apple, banana, cherry")


def test_user_error_is_not_a_key_error(fruits):
    # The CLI turns UserError into exit status 2; a KeyError would be a traceback.
    with pytest.raises(UserError):
        fruits.get("")
    assert not issubclass(UserError, KeyError)


def test_registries_are_independent():
    first: Registry = Registry("a")
    second: Registry = Registry("b")
    first.register("x")(1)
    assert "x" in first and "x" not in second
    second.register("x")(2)  # the same name in another registry is fine
    assert first.get("x") == 1 and second.get("x") == 2


def test_project_registries_hold_the_builtin_names():
    from mcit.benchmarks import BENCHMARKS
    from mcit.strategies import STRATEGIES

    assert {"seqft", "er", "joint"} <= set(STRATEGIES.names())
    assert "embedded" in BENCHMARKS
    with pytest.raises(UserError, match="Did you mean 'seqft'"):
        STRATEGIES.get("seqtf")
