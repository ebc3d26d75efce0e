"""The tag-expression parser and the index plan (pure, no I/O)."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from shared import tagexpr
from shared.errors import ValidationError
from shared.tagexpr import And, Not, Or, Tag, first_partition_owner, index_plan, parse


def m(expr: str, *tags: str) -> bool:
    return parse(expr).matches(frozenset(tags))


def error_of(text: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse(text)
    assert info.value.code == "invalid_tag_expression"
    return info.value


class TestParse:
    def test_single_tag(self) -> None:
        assert parse("news") == Tag("news")

    def test_every_tag_character(self) -> None:
        tag = "AZaz09_@#.:-"
        assert parse(tag) == Tag(tag)

    def test_not_binds_tighter_than_and_which_binds_tighter_than_or(self) -> None:
        assert parse("a || b && !c") == Or((Tag("a"), And((Tag("b"), Not(Tag("c"))))))
        assert parse("!a && b") == And((Not(Tag("a")), Tag("b")))

    def test_parentheses_override_precedence(self) -> None:
        assert parse("(a || b) && c") == And((Or((Tag("a"), Tag("b"))), Tag("c")))

    def test_chains_are_flat(self) -> None:
        assert parse("a && b && c") == And((Tag("a"), Tag("b"), Tag("c")))
        assert parse("a || b || c") == Or((Tag("a"), Tag("b"), Tag("c")))

    def test_whitespace_is_optional_and_free(self) -> None:
        assert parse("a&&!(b||c)") == parse(" a \t&&\n! ( b || c ) ")

    def test_double_negation(self) -> None:
        assert m("!!a", "a") and not m("!!a")

    def test_contract_example(self) -> None:
        expr = "news && (lang:en || lang:fr) && !muted"
        assert m(expr, "news", "lang:fr")
        assert not m(expr, "news", "lang:fr", "muted")
        assert not m(expr, "news", "lang:de")
        assert not m(expr, "lang:en")

    def test_str_round_trips(self) -> None:
        for text in ["a", "!a", "a && (b || !c)", "!(a && b) || c", "((a))", "a || b && c"]:
            expr = parse(text)
            assert parse(str(expr)) == expr

    def test_tags_lists_every_tag_once(self) -> None:
        assert parse("a && (b || !a) && c").tags() == {"a", "b", "c"}

    def test_huge_number_of_tags_is_fine(self) -> None:
        tags = [f"u:{i}" for i in range(1500)]
        expr = parse(" || ".join(tags))
        assert expr.matches(frozenset({"u:1499"}))
        assert not expr.matches(frozenset({"u:1500"}))
        assert index_plan(expr) == tags

    def test_long_and_chain_does_not_recurse(self) -> None:
        expr = parse(" && ".join(f"t{i}" for i in range(1500)))
        assert isinstance(expr, And) and len(expr.children) == 1500
        assert expr.matches(frozenset(f"t{i}" for i in range(1500)))


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "position", "fragment"),
        [
            ("a &&", 5, "expected a tag"),
            ("a & b", 3, "'&&'"),
            ("a | b", 3, "'||'"),
            ("(a || b", 1, "missing ')'"),
            ("a || b)", 7, "unmatched ')'"),
            ("a b", 3, "expected '&&' or '||'"),
            ("a && $b", 6, "unexpected character '$'"),
            ("()", 2, "expected a tag"),
            ("!", 2, "expected a tag"),
            ("a && || b", 6, "expected a tag"),
            ("(a b)", 4, "expected ')'"),
            ("é", 1, "unexpected character"),
        ],
    )
    def test_messages_say_where(self, text: str, position: int, fragment: str) -> None:
        err = error_of(text)
        assert err.message.endswith(f"at position {position}"), err.message
        assert fragment in err.message

    @pytest.mark.parametrize("text", ["", "   ", "\n"])
    def test_empty(self, text: str) -> None:
        assert "empty" in error_of(text).message

    def test_not_a_string(self) -> None:
        with pytest.raises(ValidationError):
            parse(42)  # type: ignore[arg-type]

    def test_tag_length(self) -> None:
        assert parse("a" * 120) == Tag("a" * 120)
        assert "120" in error_of("x && " + "a" * 121).message

    def test_expression_length_capped(self) -> None:
        text = " || ".join(["t"] * (tagexpr.MAX_EXPRESSION_LENGTH // 4 + 1))
        assert len(text) > tagexpr.MAX_EXPRESSION_LENGTH
        assert "longer than" in error_of(text).message

    def test_deep_parentheses_rejected_cleanly(self) -> None:
        depth = tagexpr.MAX_DEPTH
        assert parse("(" * depth + "a" + ")" * depth) == Tag("a")
        err = error_of("(" * (depth + 1) + "a" + ")" * (depth + 1))
        assert "nesting" in err.message

    def test_deep_negation_rejected_cleanly(self) -> None:
        assert "nesting" in error_of("!" * 5000 + "a").message

    def test_pathological_nesting_within_length_cap(self) -> None:
        # Within the length cap, yet far past any recursion limit if the depth were unchecked.
        n = tagexpr.MAX_EXPRESSION_LENGTH // 2 - 1
        assert "nesting" in error_of("(" * n + "a" + ")" * n).message


def plan(text: str) -> list[str] | None:
    return index_plan(parse(text))


class TestIndexPlan:
    def test_examples(self) -> None:
        assert plan("news && (lang:en || lang:fr) && !muted") == ["news"]
        assert plan("!muted") is None
        assert plan("a") == ["a"]
        assert plan("a || b || a") == ["a", "b"]
        assert plan("(a || b) && (c || d || e)") == ["a", "b"]
        assert plan("(a || b || c) && d") == ["d"]
        assert plan("a || !b") is None
        assert plan("!a && !b") is None
        assert plan("!a && (b || c)") == ["b", "c"]

    def test_negations_pushed_inwards(self) -> None:
        assert plan("!!a") == ["a"]
        assert plan("!(!a || !b)") == ["a"]
        assert plan("!(!a && !b)") == ["a", "b"]
        assert plan("!(a || b)") is None

    def test_ties_take_the_first(self) -> None:
        assert plan("(x || y) && (a || b)") == ["x", "y"]

    def test_plan_is_sufficient_on_random_expressions(self) -> None:
        # Soundness: every registration the expression matches holds a tag of the plan.
        rng = random.Random(7)
        names = ["a", "b", "c", "d", "e"]
        universe = [frozenset(c) for n in range(len(names) + 1) for c in itertools.combinations(names, n)]

        def gen(depth: int) -> str:
            r = rng.random()
            if depth == 0 or r < 0.3:
                return rng.choice(names)
            if r < 0.45:
                return "!" + gen(depth - 1)
            op = " && " if r < 0.75 else " || "
            return "(" + op.join(gen(depth - 1) for _ in range(rng.randint(2, 3))) + ")"

        for _ in range(400):
            expr = parse(gen(4))
            p = index_plan(expr)
            if p is None:
                continue
            assert len(p) == len(set(p))
            for tags in universe:
                if expr.matches(tags):
                    assert tags & set(p), (str(expr), p, tags)


class TestFirstPartitionOwner:
    def test_first_tag_of_the_plan_held(self) -> None:
        p = ["lang:en", "lang:fr", "lang:de"]
        assert first_partition_owner(p, frozenset({"lang:fr", "lang:de", "news"})) == "lang:fr"
        assert first_partition_owner(p, ["lang:de"]) == "lang:de"

    def test_each_registration_owned_by_exactly_one_partition(self) -> None:
        p = plan("lang:en || lang:fr || news")
        assert p is not None
        registrations = [{"lang:en"}, {"lang:en", "lang:fr"}, {"news", "lang:fr"}, {"news"}]
        for tags in registrations:
            readers = [part for part in p if part in tags and first_partition_owner(p, tags) == part]
            assert len(readers) == 1

    def test_holding_none_is_an_error(self) -> None:
        with pytest.raises(ValueError):
            first_partition_owner(["a"], {"b"})


def test_never_evaluates_python() -> None:
    # Anything that is not the grammar is refused before it could mean anything.
    for text in ["__import__('os')", "a or b", "a and not b", "a; b"]:
        with pytest.raises(ValidationError, match=re.escape("position")):
            parse(text)
