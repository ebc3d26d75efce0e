"""Differential test of the channel-URI check against the parsers that actually connect.

aiohttp connects to whatever `yarl` reads as the host and port, so any URI the check accepts
must mean the same allowed host and port to yarl (and to urllib, which other tools use): if the
parsers ever disagreed, the WNS token could be sent to a host the check never saw.
"""

from __future__ import annotations

import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from shared.errors import ValidationError
from shared.validation import host_allowed, validate_channel_uri

HOSTS = ("notify.windows.com", "localhost:8443")

# URIs built as scheme, user-info, host, port and rest, each part drawn from forms that confuse
# parsers (user-info, backslashes, encoded dots, odd ports, trailing dots, IP literals), so that
# both accepted and rejected URIs come up often.
SCHEMES = st.sampled_from(["https://", "HTTPS://", "http://", "https:/", "https:\\\\", "https:", "//"])
USERINFO = st.sampled_from(["", "", "", "user@", "evil.com@", "a:b@", "evil.com\\@", "%40", "@"])
HOSTNAMES = st.sampled_from([
    "notify.windows.com", "cloud.notify.windows.com", "CLOUD.Notify.Windows.COM", "db5p.notify.windows.com",
    "evilnotify.windows.com", "notify.windows.com.evil.com", "localhost", "127.0.0.1", "[::1]",
    "notify.windows.com.", "a..notify.windows.com", "notify%2ewindows.com", "xn--80ak6aa92e.notify.windows.com",
    "-x.notify.windows.com", "x_y.notify.windows.com", "",
])
PORTS = st.sampled_from(["", "", ":443", ":8443", ":0443", ":", ":65536", ":44 3", ":+443"])
REST = st.lists(st.sampled_from([
    "/", "/?token=abc", "?token=AwY%2B%2F%3D", "\\evil.com", "#@evil.com", "?@evil.com/", "/%2e%2e/", "/ch/1",
    "@evil.com", " ", "\r\n",
]), max_size=3).map("".join)
URIS = st.tuples(SCHEMES, USERINFO, HOSTNAMES, PORTS, REST).map("".join)


def expected_port(port: int | None) -> int:
    return 443 if port is None else port


@settings(max_examples=3000, deadline=None)
@given(URIS)
def test_accepted_uris_mean_the_same_allowed_host_to_yarl_and_urllib(uri: str) -> None:
    try:
        validate_channel_uri(uri, HOSTS)
    except ValidationError:
        return
    y = URL(uri, encoded=True)
    assert y.scheme == "https" and y.user is None and y.password is None
    # raw_host: the name aiohttp resolves and connects to (host would be the IDNA-decoded form).
    assert y.raw_host is not None and host_allowed(y.raw_host.lower(), y.explicit_port, HOSTS), uri
    u = urllib.parse.urlsplit(uri)
    assert u.scheme.lower() == "https" and u.username is None
    assert u.hostname == y.raw_host.lower() and expected_port(u.port) == expected_port(y.port), uri


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["cloud.", "db5p.", "wns2-by3p.", ""]), st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"]) | st.sampled_from("%-._~=&+/"), max_size=200))
def test_wns_shaped_uris_are_accepted_unchanged(sub: str, token: str) -> None:
    uri = f"https://{sub}notify.windows.com/?token={token}"
    assert validate_channel_uri(uri, HOSTS) == uri
