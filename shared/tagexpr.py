"""Boolean tag expressions for targeting (contract section 2): `news && (lang:en || lang:fr) && !muted`.

A small recursive-descent parser, never `eval`. Grammar, loosest binding first:

    or_expr  := and_expr ("||" and_expr)*
    and_expr := unary ("&&" unary)*
    unary    := "!" unary | primary
    primary  := TAG | "(" or_expr ")"

Tags use the registration alphabet (1 to 120 of `A-Z a-z 0-9 _ @ # . : -`). The number of tags is
not limited (Notification Hubs' limit of 20 is exactly what this project promises not to have),
but the text length and the nesting depth are, so no input can exhaust the stack or the CPU.

`index_plan` turns an expression into the set of tag partitions a reader must visit: every
registration the expression matches holds at least one tag of the plan, so the audience can be read
from the tag index instead of a scan of every registration.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NoReturn

from shared.errors import ValidationError

# A queue message is at most 64 KiB; 16 KiB leaves room for the rest of the job and still allows
# well over a thousand tags.
MAX_EXPRESSION_LENGTH = 16 * 1024
# Parentheses and `!` both nest; each level costs a few Python frames, so 64 stays far from the
# interpreter's recursion limit while no sensible expression comes close.
MAX_DEPTH = 64
MAX_TAG_LENGTH = 120

_CODE = "invalid_tag_expression"
_TAG_RUN = re.compile(r"[A-Za-z0-9_@#.:-]+")


class Expr:
    """A parsed expression. Immutable and hashable (subclasses are frozen dataclasses)."""

    __slots__ = ()

    def matches(self, tags: Collection[str]) -> bool:
        """Whether a registration holding `tags` is selected (pass a set for O(1) lookups)."""
        raise NotImplementedError

    def tags(self) -> frozenset[str]:
        """Every tag the expression names."""
        out: set[str] = set()
        _collect(self, out)
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class Tag(Expr):
    name: str

    def matches(self, tags: Collection[str]) -> bool:
        return self.name in tags

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Not(Expr):
    child: Expr

    def matches(self, tags: Collection[str]) -> bool:
        return not self.child.matches(tags)

    def __str__(self) -> str:
        return f"!{_wrap(self.child)}"


@dataclass(frozen=True, slots=True)
class And(Expr):
    # n-ary rather than binary: a long `a && b && ...` chain stays one flat node, so evaluation
    # and planning never recurse once per operand.
    children: tuple[Expr, ...]

    def matches(self, tags: Collection[str]) -> bool:
        return all(c.matches(tags) for c in self.children)

    def __str__(self) -> str:
        return " && ".join(_wrap(c) for c in self.children)


@dataclass(frozen=True, slots=True)
class Or(Expr):
    children: tuple[Expr, ...]

    def matches(self, tags: Collection[str]) -> bool:
        return any(c.matches(tags) for c in self.children)

    def __str__(self) -> str:
        return " || ".join(_wrap(c) for c in self.children)


def _wrap(e: Expr) -> str:
    return f"({e})" if isinstance(e, And | Or) else str(e)


def _collect(e: Expr, out: set[str]) -> None:
    if isinstance(e, Tag):
        out.add(e.name)
    elif isinstance(e, Not):
        _collect(e.child, out)
    elif isinstance(e, And | Or):
        for c in e.children:
            _collect(c, out)


# Token kinds.
_AND, _OR, _NOT, _LP, _RP, _TAG, _END = "&&", "||", "!", "(", ")", "tag", "end"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def _peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def _enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            _fail(f"nesting deeper than {MAX_DEPTH} levels", pos)

    def parse(self) -> Expr:
        kind, _, pos = self._peek()
        if kind == _END:
            raise ValidationError(_CODE, "the tag expression is empty")
        expr = self._or()
        kind, value, pos = self._peek()
        if kind != _END:
            if kind == _RP:
                _fail("unmatched ')'", pos)
            _fail(f"expected '&&' or '||' before {_describe(kind, value)}", pos)
        return expr

    def _or(self) -> Expr:
        children = [self._and()]
        while self._peek()[0] == _OR:
            self.i += 1
            children.append(self._and())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def _and(self) -> Expr:
        children = [self._unary()]
        while self._peek()[0] == _AND:
            self.i += 1
            children.append(self._unary())
        return children[0] if len(children) == 1 else And(tuple(children))

    def _unary(self) -> Expr:
        kind, value, pos = self._peek()
        if kind == _NOT:
            self.i += 1
            self._enter(pos)
            child = self._unary()
            self.depth -= 1
            return Not(child)
        if kind == _TAG:
            self.i += 1
            return Tag(value)
        if kind == _LP:
            self.i += 1
            self._enter(pos)
            inner = self._or()
            close_kind, close_value, close_pos = self._peek()
            if close_kind != _RP:
                if close_kind == _END:
                    _fail("missing ')' for the '(' opened", pos)
                _fail(f"expected ')' but found {_describe(close_kind, close_value)}", close_pos)
            self.i += 1
            self.depth -= 1
            return inner
        _fail(f"expected a tag, '!' or '(' but found {_describe(kind, value)}", pos)


def _describe(kind: str, value: str) -> str:
    if kind == _END:
        return "the end of the expression"
    if kind == _TAG:
        return f"tag {value!r}"
    return f"{kind!r}"


def _fail(message: str, pos: int) -> NoReturn:
    # Positions are 1-based so they read like a text editor's column.
    raise ValidationError(_CODE, f"{message} at position {pos + 1}")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "&" or ch == "|":
            if text.startswith(ch * 2, i):
                tokens.append((ch * 2, ch * 2, i))
                i += 2
            else:
                _fail(f"expected {ch * 2!r}, a single {ch!r} is not an operator", i)
        elif ch == "!":
            tokens.append((_NOT, ch, i))
            i += 1
        elif ch == "(":
            tokens.append((_LP, ch, i))
            i += 1
        elif ch == ")":
            tokens.append((_RP, ch, i))
            i += 1
        else:
            m = _TAG_RUN.match(text, i)
            if m is None:
                _fail(f"unexpected character {ch!r}", i)
            tag = m.group()
            if len(tag) > MAX_TAG_LENGTH:
                _fail(f"tag longer than {MAX_TAG_LENGTH} characters", i)
            tokens.append((_TAG, tag, i))
            i = m.end()
    tokens.append((_END, "", n))
    return tokens


def parse(text: str) -> Expr:
    """Parse a tag expression or raise `ValidationError("invalid_tag_expression", ...)`."""
    if not isinstance(text, str):
        raise ValidationError(_CODE, "the tag expression must be a string")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValidationError(_CODE, f"the tag expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    return _Parser(text).parse()


def index_plan(expr: Expr) -> list[str] | None:
    """Tags whose index partitions together hold every registration `expr` can match.

    `None` means no such set exists (the expression matches registrations by what they lack, as
    in `!muted`) and the audience needs a full scan. Among sufficient sets a small one is chosen:
    an AND needs only its cheapest child's plan, an OR needs the union of all its children's.
    The list has no duplicates and a stable order (see `first_partition_owner`).
    """
    return _plan(expr, negated=False)


def _plan(e: Expr, negated: bool) -> list[str] | None:
    # Negations are pushed inwards (De Morgan), so `!(!a || !b)` plans like `a && b`.
    if isinstance(e, Tag):
        return None if negated else [e.name]
    if isinstance(e, Not):
        return _plan(e.child, not negated)
    assert isinstance(e, And | Or)
    conjunction = isinstance(e, And) != negated
    plans = [_plan(c, negated) for c in e.children]
    if conjunction:
        known = [p for p in plans if p is not None]
        return min(known, key=len) if known else None
    out: list[str] = []
    seen: set[str] = set()
    for p in plans:
        if p is None:
            return None
        for tag in p:
            if tag not in seen:
                seen.add(tag)
                out.append(tag)
    return out


def first_partition_owner(plan: Sequence[str], tags: Collection[str]) -> str:
    """The partition of `plan` that owns a registration holding `tags`: the first plan tag it holds.

    A reader of several partitions keeps an entry read from partition `p` only when this returns
    `p`, so each registration is taken once without remembering what was already seen.
    Raises `ValueError` when the registration holds no tag of the plan (it cannot be in any of
    the plan's partitions).
    """
    lookup = tags if isinstance(tags, set | frozenset) else frozenset(tags)
    for tag in plan:
        if tag in lookup:
            return tag
    raise ValueError("the registration holds no tag of the plan")


__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "And",
    "Expr",
    "Not",
    "Or",
    "Tag",
    "first_partition_owner",
    "index_plan",
    "parse",
]
