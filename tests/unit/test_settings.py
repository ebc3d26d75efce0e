"""Settings: read once, validated with the setting's name in the error, redacted when logged."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.settings import load_settings, token_url

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.wns_auth == "entra" and s.push_auth == "none" and not s.push_require_user
    assert s.wns_channel_hosts == ("notify.windows.com",) and s.channel_ttl_days == 30
    assert s.push_jobs_queue == "push-jobs" and len(s.expire_schedule.split()) == 6
    assert s.storage.connection_string and "127.0.0.1:10002" in s.storage.connection_string


def test_identity_based_storage() -> None:
    s = load_settings({"AzureWebJobsStorage__accountName": "pushprod", "AzureWebJobsStorage__clientId": "abc"})
    assert s.storage.uses_identity
    assert s.storage.table_service_uri == "https://pushprod.table.core.windows.net"
    assert s.storage.queue_service_uri == "https://pushprod.queue.core.windows.net"
    assert s.storage.client_id == "abc"
    s = load_settings({"AzureWebJobsStorage__tableServiceUri": "https://t.example",
                       "AzureWebJobsStorage__queueServiceUri": "https://q.example"})
    assert s.storage.table_service_uri == "https://t.example"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage": "nonsense"}, "AzureWebJobsStorage"),
        ({**BASE, "WNS_AUTH": "oauth"}, "WNS_AUTH"),
        ({**BASE, "CHANNEL_TTL_DAYS": "0"}, "CHANNEL_TTL_DAYS"),
        ({**BASE, "CHANNEL_TTL_DAYS": "thirty"}, "CHANNEL_TTL_DAYS"),
        ({**BASE, "PUSH_AUTH": "basic"}, "PUSH_AUTH"),
        ({**BASE, "PUSH_REQUIRE_USER": "maybe"}, "PUSH_REQUIRE_USER"),
        ({**BASE, "PUSH_JOBS_QUEUE": "Bad_Queue"}, "PUSH_JOBS_QUEUE"),
        ({**BASE, "EXPIRE_SCHEDULE": "0 3 * * *"}, "EXPIRE_SCHEDULE"),
        ({**BASE, "WNS_TOKEN_URL": "http://login.example/token"}, "WNS_TOKEN_URL"),
        ({**BASE, "WNS_CHANNEL_HOSTS": "evil.com/x"}, "WNS_CHANNEL_HOSTS"),
        ({**BASE, "WNS_CHANNEL_HOSTS": "localhost:99999"}, "WNS_CHANNEL_HOSTS"),
        ({"AzureWebJobsStorage__accountName": "Bad_Name"}, "AzureWebJobsStorage__accountName"),
        ({**BASE, "WNS_CLIENT_SECRET": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/wns/)"},
         "WNS_CLIENT_SECRET"),
    ],
)
def test_invalid_settings_name_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.setting == name and name in str(err.value)


def test_channel_hosts_parsing() -> None:
    s = load_settings({**BASE, "WNS_CHANNEL_HOSTS": " notify.windows.com, localhost:8443 ,"})
    assert s.wns_channel_hosts == ("notify.windows.com", "localhost:8443")


def test_redacted_copy_hides_secrets() -> None:
    secret, key = "s3cr3t-value", "S0meAccountKey=="
    s = load_settings({"AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key}",
                       "WNS_CLIENT_SECRET": secret})
    text = repr(s.redacted()) + repr(s)
    assert secret not in text and key not in text and "acct" in text


def test_token_urls() -> None:
    s = load_settings({**BASE, "WNS_TENANT_ID": "tenant-1"})
    assert token_url(s) == "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
    assert token_url(load_settings({**BASE, "WNS_AUTH": "live"})) == "https://login.live.com/accesstoken.srf"
    assert token_url(load_settings({**BASE, "WNS_TOKEN_URL": "https://localhost:9/t"})) == "https://localhost:9/t"
