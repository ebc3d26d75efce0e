"""Which storage the CLI talks to: the app's own settings, or what the command line says.

There is one way of reading settings (`shared.settings.load_settings`); the storage options only
rewrite the `AzureWebJobsStorage*` names it reads, most explicit first:

1. `--connection STRING` (`UseDevelopmentStorage=true` for Azurite);
2. `--account NAME` or `--account-url https://NAME.table.core.windows.net`: identity-based, with
   `DefaultAzureCredential` (your `az login`, environment credentials or a managed identity), as
   the app's `AzureWebJobsStorage__accountName` / `__tableServiceUri` + `__queueServiceUri`;
3. otherwise the environment, falling back to `local.settings.json` (as the app and devhost do).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from azure.core.exceptions import ClientAuthenticationError

from pushctl.errors import STORAGE, CliError, usage
from shared.errors import ConfigError
from shared.settings import Settings, StorageSettings, load_local_settings, load_settings

_PREFIX = "AzureWebJobsStorage__"
_SERVICES = ("table", "queue", "blob", "file", "dfs")


def service_uris(account_url: str) -> tuple[str, str]:
    """The table and queue endpoints of the account one endpoint URL names (any service)."""
    hint = "--account-url must look like https://ACCOUNT.table.core.windows.net"
    try:
        parts = urlsplit(account_url.strip())
        port = parts.port
    except ValueError:
        raise usage(hint) from None
    labels = (parts.hostname or "").split(".")
    if parts.scheme != "https" or len(labels) < 4 or labels[1] not in _SERVICES or not labels[0]:
        raise usage(hint)
    account, suffix = labels[0], ".".join(labels[2:])  # core.windows.net, or a sovereign cloud's
    netloc = f":{port}" if port else ""
    return f"https://{account}.table.{suffix}{netloc}", f"https://{account}.queue.{suffix}{netloc}"


def storage_env(env: Mapping[str, str], *, connection: str | None = None, account: str | None = None,
                account_url: str | None = None) -> dict[str, str]:
    """`env` with its storage settings replaced by the command line's, if it gives any."""
    given = [flag for flag, value in (("--connection", connection), ("--account", account),
                                      ("--account-url", account_url)) if value]
    if len(given) > 1:
        raise usage(f"give only one of --connection, --account, --account-url (got {' and '.join(given)})")
    out = dict(env)
    if connection:
        out["AzureWebJobsStorage"] = connection
        return out
    if account or account_url:
        # An identity-based account from the command line replaces every storage setting but the
        # user-assigned identity's client id.
        out.pop("AzureWebJobsStorage", None)
        for name in [n for n in out if n.startswith(_PREFIX) and n != _PREFIX + "clientId"]:
            del out[name]
        if account:
            out[_PREFIX + "accountName"] = account.strip()
        else:
            assert account_url is not None
            out[_PREFIX + "tableServiceUri"], out[_PREFIX + "queueServiceUri"] = service_uris(account_url)
    return out


def settings_from(env: Mapping[str, str], *, connection: str | None = None, account: str | None = None,
                  account_url: str | None = None) -> Settings:
    """Validated settings, or a usage error naming what to fix (an option or a setting)."""
    try:
        return load_settings(storage_env(env, connection=connection, account=account, account_url=account_url))
    except ConfigError as exc:
        problem = str(exc).removeprefix(f"setting {exc.setting} ")
        if exc.setting.startswith("AzureWebJobsStorage"):
            if connection:
                raise usage(f"--connection {problem}") from None
            if account:
                raise usage(f"--account {problem}") from None
            if problem.startswith("is required"):
                raise usage(
                    "no storage given: pass --connection (UseDevelopmentStorage=true for Azurite), --account "
                    "or --account-url, or set AzureWebJobsStorage (the environment or local.settings.json)"
                ) from None
        raise usage(str(exc)) from None


def load(*, connection: str | None = None, account: str | None = None,
         account_url: str | None = None) -> Settings:
    """The process's settings: `local.settings.json` fills what the environment lacks, the
    command line overrides storage."""
    try:
        load_local_settings()
    except ConfigError as exc:
        raise usage(str(exc)) from None
    return settings_from(os.environ, connection=connection, account=account, account_url=account_url)


def describe(storage: StorageSettings) -> str:
    """Where storage is, without secrets (for error messages)."""
    if storage.connection_string:
        parts = dict(p.split("=", 1) for p in storage.connection_string.split(";") if "=" in p)
        endpoint = parts.get("TableEndpoint") or parts.get("QueueEndpoint")
        if endpoint:
            return endpoint.rstrip("/")
        return f"account {parts.get('AccountName', '?')}"
    return storage.table_service_uri or "?"


def storage_error(storage: StorageSettings, exc: BaseException) -> CliError:
    """One line that says where storage is and what went wrong (and, for sign-in, what to do)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ClientAuthenticationError):
        cause = cause.__cause__
    if cause is not None:
        first = (str(cause.message if isinstance(cause.message, str) else cause) or "").splitlines()
        return CliError(f"cannot use storage at {describe(storage)}: Azure AD sign-in failed "
                        f"({first[0] if first else type(cause).__name__}); sign in with `az login`, and "
                        "make sure your identity has Storage Table and Queue Data Contributor on the account",
                        STORAGE)
    lines = str(exc).strip().splitlines()
    return CliError(f"cannot use storage at {describe(storage)}: {lines[0] if lines else type(exc).__name__}",
                    STORAGE)


__all__ = ["describe", "load", "service_uris", "settings_from", "storage_env", "storage_error"]
