"""The app's settings (contract section 6), read and validated once, redacted when logged.

Settings come from the environment (App Settings in Azure). Local tools (`devhost`, `pushctl`,
tests) call `load_local_settings()` first, which copies `local.settings.json` "Values" into the
environment for names that are not already set, the same precedence Core Tools uses.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from shared.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

AZURITE_CONNECTION = "UseDevelopmentStorage=true"
# Azurite's well-known development account (public, documented by Microsoft).
_AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

TOKEN_URLS = {
    "entra": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
    "live": "https://login.live.com/accesstoken.srf",
}

_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


@dataclass(frozen=True)
class StorageSettings:
    """Where storage is, and how to reach it: a connection string or identity-based endpoints."""

    connection_string: str | None = field(default=None, repr=False)
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    # For a user-assigned managed identity (`AzureWebJobsStorage__clientId`).
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    wns_auth: Literal["entra", "live"] = "entra"
    wns_tenant_id: str = ""
    wns_client_id: str = ""
    wns_client_secret: str = field(default="", repr=False)
    wns_token_url: str = ""
    wns_channel_hosts: tuple[str, ...] = ("notify.windows.com",)
    channel_ttl_days: int = 30
    push_auth: Literal["none", "platform"] = "none"
    push_require_user: bool = False
    push_jobs_queue: str = "push-jobs"
    expire_schedule: str = "0 30 3 * * *"
    channels_table: str = "channels"
    index_table: str = "channelindex"
    jobs_table: str = "pushjobs"
    outcomes_table: str = "pushoutcomes"

    def redacted(self) -> dict[str, object]:
        """A copy safe to log: secrets replaced, connection strings reduced to their account."""
        out: dict[str, object] = {}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        out["wns_client_secret"] = "***" if self.wns_client_secret else ""
        st = self.storage
        out["storage"] = {
            "connection_string": _redact_connection(st.connection_string),
            "table_service_uri": st.table_service_uri,
            "queue_service_uri": st.queue_service_uri,
            "client_id": st.client_id,
        }
        return out

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _redact_connection(conn: str | None) -> str | None:
    if conn is None:
        return None
    if conn.strip() == AZURITE_CONNECTION:
        return conn
    parts = dict(_split_connection(conn))
    return f"AccountName={parts.get('AccountName', '?')};AccountKey=***"


def _split_connection(conn: str) -> list[tuple[str, str]]:
    out = []
    for part in conn.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def azurite_connection_string(host: str = "127.0.0.1", table_port: int = 10002,
                              queue_port: int = 10001, blob_port: int = 10000) -> str:
    """The explicit form of `UseDevelopmentStorage=true`, for Azurite on other ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={_AZURITE_ACCOUNT};AccountKey={_AZURITE_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{_AZURITE_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{_AZURITE_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{_AZURITE_ACCOUNT};"
    )


def normalize_connection_string(conn: str) -> str:
    """Expand the `UseDevelopmentStorage=true` shorthand, which the Azure SDKs do not accept."""
    if conn.strip().rstrip(";").lower() == AZURITE_CONNECTION.lower():
        return azurite_connection_string()
    return conn


def _storage_from(env: Mapping[str, str]) -> StorageSettings:
    conn = env.get("AzureWebJobsStorage", "").strip()
    if conn:
        if "=" not in conn:
            raise ConfigError("AzureWebJobsStorage", "is not a connection string")
        return StorageSettings(connection_string=normalize_connection_string(conn))
    prefix = "AzureWebJobsStorage__"
    account = env.get(prefix + "accountName", "").strip()
    table_uri = env.get(prefix + "tableServiceUri", "").strip()
    queue_uri = env.get(prefix + "queueServiceUri", "").strip()
    if account:
        if not re.fullmatch(r"[a-z0-9]{3,24}", account):
            raise ConfigError(prefix + "accountName", "must be 3-24 lowercase letters and digits")
        table_uri = table_uri or f"https://{account}.table.core.windows.net"
        queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
    if not table_uri or not queue_uri:
        raise ConfigError(
            "AzureWebJobsStorage",
            "is required: a connection string (UseDevelopmentStorage=true for Azurite), or "
            "AzureWebJobsStorage__accountName, or both AzureWebJobsStorage__tableServiceUri and "
            "AzureWebJobsStorage__queueServiceUri",
        )
    for name, uri in ((prefix + "tableServiceUri", table_uri), (prefix + "queueServiceUri", queue_uri)):
        if not uri.startswith("https://") and not uri.startswith("http://127.0.0.1"):
            raise ConfigError(name, "must be an https:// URL")
    client_id = env.get(prefix + "clientId", "").strip() or None
    return StorageSettings(table_service_uri=table_uri, queue_service_uri=queue_uri, client_id=client_id)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"must be true or false, not {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def parse_channel_hosts(raw: str) -> tuple[str, ...]:
    """`WNS_CHANNEL_HOSTS`: comma-separated host suffixes, each optionally `host:port`."""
    hosts = []
    for item in raw.split(","):
        item = item.strip().lower().lstrip(".")
        if not item:
            continue
        host, _, port = item.partition(":")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host) or ".." in host:
            raise ConfigError("WNS_CHANNEL_HOSTS", f"{item!r} is not a host name")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError("WNS_CHANNEL_HOSTS", f"{item!r} has an invalid port")
        hosts.append(item)
    if not hosts:
        raise ConfigError("WNS_CHANNEL_HOSTS", "names no host")
    return tuple(hosts)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise `ConfigError` naming the first bad one."""
    env = os.environ if env is None else env
    storage = _storage_from(env)
    wns_auth = _choice(env, "WNS_AUTH", ("entra", "live"), "entra")
    ttl_raw = env.get("CHANNEL_TTL_DAYS", "").strip() or "30"
    if not ttl_raw.isdigit() or not 1 <= int(ttl_raw) <= 365:
        raise ConfigError("CHANNEL_TTL_DAYS", f"must be a whole number of days from 1 to 365, not {ttl_raw!r}")
    queue = env.get("PUSH_JOBS_QUEUE", "").strip() or "push-jobs"
    if not _QUEUE_NAME.fullmatch(queue):
        raise ConfigError("PUSH_JOBS_QUEUE", f"{queue!r} is not a valid queue name")
    schedule = env.get("EXPIRE_SCHEDULE", "").strip() or "0 30 3 * * *"
    if len(schedule.split()) != 6:
        raise ConfigError("EXPIRE_SCHEDULE", "must be an NCRONTAB expression with six fields")
    secret = env.get("WNS_CLIENT_SECRET", "")
    if secret.startswith("@Microsoft.KeyVault("):
        # App Service passes the reference through verbatim when it cannot resolve it.
        raise ConfigError("WNS_CLIENT_SECRET", "is an unresolved Key Vault reference: check the app's identity "
                          "has 'Key Vault Secrets User' on the vault and keyVaultReferenceIdentity is set")
    token_url = env.get("WNS_TOKEN_URL", "").strip()
    if token_url and not token_url.startswith("https://"):
        raise ConfigError("WNS_TOKEN_URL", "must be an https:// URL")
    return Settings(
        storage=storage,
        wns_auth=wns_auth,  # type: ignore[arg-type]
        wns_tenant_id=env.get("WNS_TENANT_ID", "").strip(),
        wns_client_id=env.get("WNS_CLIENT_ID", "").strip(),
        wns_client_secret=secret,
        wns_token_url=token_url,
        wns_channel_hosts=parse_channel_hosts(env.get("WNS_CHANNEL_HOSTS", "") or "notify.windows.com"),
        channel_ttl_days=int(ttl_raw),
        push_auth=_choice(env, "PUSH_AUTH", ("none", "platform"), "none"),  # type: ignore[arg-type]
        push_require_user=_bool(env, "PUSH_REQUIRE_USER", False),
        push_jobs_queue=queue,
        expire_schedule=schedule,
    )


def token_url(settings: Settings) -> str:
    """The WNS token endpoint for the configured flow, unless overridden."""
    if settings.wns_token_url:
        return settings.wns_token_url
    return TOKEN_URLS[settings.wns_auth].format(tenant=settings.wns_tenant_id or "common")


def load_local_settings(path: Path | None = None) -> None:
    """Copy `local.settings.json` Values into the environment where not already set."""
    path = path or ROOT / "local.settings.json"
    if not path.is_file():
        return
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot be read: {exc}") from exc
    for key, value in values.items():
        if isinstance(value, str):
            os.environ.setdefault(key, value)


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, loaded on first use (functions import this at cold start)."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def reset_settings() -> None:
    """Forget the cached settings (tests and local tools that change the environment)."""
    global _cached
    _cached = None


__all__ = [
    "AZURITE_CONNECTION",
    "ROOT",
    "Settings",
    "StorageSettings",
    "azurite_connection_string",
    "get_settings",
    "load_local_settings",
    "load_settings",
    "normalize_connection_string",
    "parse_channel_hosts",
    "reset_settings",
    "token_url",
]
