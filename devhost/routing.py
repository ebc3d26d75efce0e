"""HTTP trigger route templates (`channels/{deviceId}`), matched the way ASP.NET routing does in the
host, to the extent a local host needs: literal and parameter segments, optional trailing
parameters (`{name?}`), defaults (`{name=value}`), catch-alls (`{*rest}`), case-insensitive
literals. Constraints (`{id:guid}`) are accepted and ignored: a value is matched by segment only.

https://learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#customize-the-http-endpoint

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

# Inside a parameter, "{{" and "}}" are escaped braces (ASP.NET syntax, for `regex(\d{{3}})`).
_PARAM = re.compile(r"\{((?:[^{}]|\{\{|\}\})*)\}")

T = TypeVar("T")


class RouteError(ValueError):
    """A route template the host would refuse."""


@dataclass(frozen=True)
class _Param:
    name: str
    optional: bool
    default: str | None
    catch_all: bool


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    regex: re.Pattern[str]
    params: tuple[_Param, ...]
    # Lower sorts first: literals beat parameters, which beat optional ones and catch-alls.
    precedence: tuple[int, ...]

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip().strip("/")
        segments = text.split("/") if text else []
        pattern = ""
        params: list[_Param] = []
        precedence: list[int] = []
        for index, segment in enumerate(segments):
            if not segment:
                raise RouteError(f"route {template!r} has an empty segment")
            pieces = _PARAM.split(segment)  # literal, param, literal, param, ..., literal
            seg_regex = ""
            optional_segment = False
            rank = 0
            for i, piece in enumerate(pieces):
                if i % 2 == 0:
                    if "{" in piece or "}" in piece:
                        raise RouteError(f"route {template!r} has an unbalanced brace")
                    seg_regex += re.escape(piece)
                    continue
                param = _parse_param(piece, template)
                if param.name in {p.name for p in params}:
                    raise RouteError(f"route {template!r} uses {{{param.name}}} twice")
                group = f"p{len(params)}"
                params.append(param)
                if param.catch_all:
                    if index != len(segments) - 1 or len(pieces) != 3 or pieces[0] or pieces[2]:
                        raise RouteError(f"route {template!r}: a catch-all must be the whole last segment")
                    seg_regex += f"(?P<{group}>.*)"
                    optional_segment = True
                    rank = max(rank, 3)
                    continue
                seg_regex += f"(?P<{group}>[^/]+)"
                if param.optional or param.default is not None:
                    if len(pieces) != 3 or pieces[0] or pieces[2]:
                        raise RouteError(f"route {template!r}: an optional parameter must be a whole segment")
                    optional_segment = True
                    rank = max(rank, 2)
                else:
                    rank = max(rank, 1)
            if optional_segment:
                pattern += f"(?:/{seg_regex})?"
            elif any(_is_optional_segment(s) for s in segments[:index]):
                raise RouteError(f"route {template!r}: only trailing segments may be optional")
            else:
                pattern += "/" + seg_regex
            precedence.append(rank)
        return cls(template, re.compile(f"^{pattern}/?$", re.IGNORECASE), tuple(params), tuple(precedence))

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for a raw (still percent-encoded) path, or None when it does not match."""
        path = "/" + path.strip("/") if path.strip("/") else ""
        m = self.regex.match(path)
        if m is None:
            return None
        values: dict[str, str] = {}
        for i, param in enumerate(self.params):
            raw = m.group(f"p{i}")
            if raw:
                values[param.name] = unquote(raw)
            elif param.default is not None:
                values[param.name] = param.default
        return values


def _is_optional_segment(segment: str) -> bool:
    params = _PARAM.findall(segment)
    return bool(params) and any(p.endswith("?") or "=" in p or p.startswith("*") for p in params)


def _parse_param(text: str, template: str) -> _Param:
    catch_all = text.startswith("*")
    body = text.lstrip("*")
    default = None
    # `{name:constraint=default}` or `{name=default}`: the default follows the last "=" outside a regex.
    name_part, colon, _constraint = body.partition(":")
    optional = body.endswith("?")
    if "=" in name_part:
        name_part, _, default = name_part.partition("=")
    elif colon and "=" in _constraint and not _constraint.startswith("regex("):
        default = _constraint.rsplit("=", 1)[1]
    name = name_part.rstrip("?")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteError(f"route {template!r}: {{{text}}} does not name a parameter")
    return _Param(name, optional, default, catch_all)


@dataclass
class Route(Generic[T]):
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    target: T


@dataclass
class RouteMatch(Generic[T]):
    target: T | None
    values: dict[str, str] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()


class Router(Generic[T]):
    """Routes sorted by precedence, so `channels/stats` wins over `channels/{deviceId}`."""

    def __init__(self, routes: Iterable[Route[T]] = ()) -> None:
        self._routes: list[Route[T]] = []
        for route in routes:
            self.add(route)

    def add(self, route: Route[T]) -> None:
        self._routes.append(route)
        self._routes.sort(key=lambda r: r.template.precedence)

    def resolve(self, method: str, path: str) -> RouteMatch[T] | None:
        """The route for this request; `target` None (with `allowed` set) when only the method is wrong;
        None when no route has this path."""
        allowed: set[str] = set()
        for route in self._routes:
            values = route.template.match(path)
            if values is None:
                continue
            if route.methods is None or method.upper() in route.methods:
                return RouteMatch(route.target, values)
            allowed |= route.methods
        if allowed:
            return RouteMatch(None, allowed=frozenset(allowed))
        return None


def parse_methods(methods: Sequence[str] | None) -> frozenset[str] | None:
    if not methods:
        return None
    return frozenset(m.upper() for m in methods)


__all__ = ["Route", "RouteError", "RouteMatch", "RouteTemplate", "Router", "parse_methods"]
