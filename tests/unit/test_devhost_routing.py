"""Route templates and method matching (devhost's HTTP trigger)."""

import pytest

from devhost.routing import Route, RouteError, Router, RouteTemplate, parse_methods


def match(template: str, path: str) -> dict[str, str] | None:
    return RouteTemplate.parse(template).match(path)


def test_literal_and_parameter_segments() -> None:
    assert match("channels/{deviceId}", "/channels/abc-123") == {"deviceId": "abc-123"}
    assert match("channels/{deviceId}", "/channels/abc/extra") is None
    assert match("channels/{deviceId}", "/channels") is None
    assert match("channels/{deviceId}", "/other/abc") is None


def test_literals_are_case_insensitive_and_trailing_slash_ignored() -> None:
    assert match("Channels/{id}", "/cHANNELS/x/") == {"id": "x"}


def test_values_are_percent_decoded() -> None:
    assert match("files/{name}", "/files/a%20b%2Fc") == {"name": "a b/c"}


def test_constraints_are_ignored_when_matching() -> None:
    assert match("items/{id:guid}", "/items/not-a-guid") == {"id": "not-a-guid"}
    assert match("items/{id:regex(^\\d{{3}}$)}", "/items/x") == {"id": "x"}


def test_optional_trailing_parameters() -> None:
    tpl = RouteTemplate.parse("items/{id}/{part?}")
    assert tpl.match("/items/1") == {"id": "1"}
    assert tpl.match("/items/1/") == {"id": "1"}
    assert tpl.match("/items/1/body") == {"id": "1", "part": "body"}
    assert tpl.match("/items") is None


def test_defaults_and_catch_all() -> None:
    assert match("list/{page=1}", "/list") == {"page": "1"}
    assert match("list/{page:int=1}", "/list/4") == {"page": "4"}
    assert match("static/{*path}", "/static/a/b/c.css") == {"path": "a/b/c.css"}
    assert match("static/{*path}", "/static") == {}


def test_mixed_segment() -> None:
    assert match("files/{name}.{ext}", "/files/report.pdf") == {"name": "report", "ext": "pdf"}


def test_empty_template_matches_root() -> None:
    assert match("", "/") == {}
    assert match("", "") == {}
    assert match("", "/x") is None


@pytest.mark.parametrize(
    "template",
    ["a//b", "a/{id", "a/{id}/{id}", "a/{opt?}/b", "a/{*rest}/b", "a/{1bad}", "a/x{opt?}"],
)
def test_invalid_templates(template: str) -> None:
    with pytest.raises(RouteError):
        RouteTemplate.parse(template)


def test_router_prefers_literals_and_reports_allowed_methods() -> None:
    router: Router[str] = Router([
        Route(RouteTemplate.parse("channels/{deviceId}"), parse_methods(["get", "put", "delete"]), "by-id"),
        Route(RouteTemplate.parse("channels/stats"), parse_methods(["get"]), "stats"),
        Route(RouteTemplate.parse("anything/{x?}"), parse_methods(None), "any"),
    ])
    ok = router.resolve("GET", "/channels/stats")
    assert ok is not None and ok.target == "stats"
    ok = router.resolve("put", "/channels/dev1")
    assert ok is not None and ok.target == "by-id" and ok.values == {"deviceId": "dev1"}
    # `stats` also matches the parameter route, which allows PUT.
    ok = router.resolve("PUT", "/channels/stats")
    assert ok is not None and ok.target == "by-id"
    wrong = router.resolve("POST", "/channels/dev1")
    assert wrong is not None and wrong.target is None and wrong.allowed == {"GET", "PUT", "DELETE"}
    assert router.resolve("GET", "/nothing") is None
    anything = router.resolve("PATCH", "/anything")
    assert anything is not None and anything.target == "any"
