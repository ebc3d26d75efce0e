"""`infra/`, `.funcignore` and `azure.yaml` agree with the code and with docs/deploy.md.

What is checked, and why it matters in Azure:

- every app setting the code reads (found by scanning `shared/` and the function folders, with
  contract section 6 as a floor) is set by the Bicep, or has a default in `shared/settings.py`;
  and every setting the Bicep sets is one somebody reads (a typo would be silently ignored);
- the queues and tables the app uses are created, with the names the code defaults to;
- every storage connection a `function.json` names resolves to identity-based `__` settings;
- no account key, SAS or connection string can appear in infra/, and shared-key access is off;
- role assignments are exactly the documented built-in roles, each scoped to one resource;
- the package `func azure functionapp publish` (Core Tools' own .funcignore matcher, ported below)
  and `azd deploy` (gitignore semantics) would build holds the app and nothing else.

Bicep is read with a small scanner (comment- and string-aware, brackets matched), not a full
parser: it pulls out declarations, object keys and resource blocks, which is all these checks
need. Where `pycep-parser` is installed, every file is also parsed by it as a syntax check.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared import settings as settings_mod

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
API = INFRA / "app" / "api.bicep"
STORAGE = INFRA / "app" / "storage.bicep"
RBAC = INFRA / "app" / "rbac.bicep"
KEYVAULT = INFRA / "app" / "keyvault.bicep"
MONITORING = INFRA / "app" / "monitoring.bicep"

# Contract section 6, with AzureWebJobsStorage in its identity-based form, plus Application
# Insights with Entra auth: the floor of settings the deployed app must have, whatever the scan finds.
CONTRACT_SETTINGS = frozenset({
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "WNS_AUTH", "WNS_TENANT_ID", "WNS_CLIENT_ID", "WNS_CLIENT_SECRET", "WNS_TOKEN_URL",
    "WNS_CHANNEL_HOSTS", "CHANNEL_TTL_DAYS", "PUSH_AUTH", "PUSH_REQUIRE_USER",
    "PUSH_JOBS_QUEUE", "EXPIRE_SCHEDULE",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
})
# Settings the contract says the code reads (section 6); the scan must find each of them.
CODE_READS_AT_LEAST = frozenset({
    "AzureWebJobsStorage", "WNS_AUTH", "WNS_TENANT_ID", "WNS_CLIENT_ID", "WNS_CLIENT_SECRET",
    "WNS_TOKEN_URL", "WNS_CHANNEL_HOSTS", "CHANNEL_TTL_DAYS", "PUSH_AUTH", "PUSH_REQUIRE_USER",
    "PUSH_JOBS_QUEUE", "EXPIRE_SCHEDULE",
})
# Read by code but provided by the platform or the process, never by our Bicep.
PLATFORM_SETTINGS = frozenset({
    "WEBSITE_HOSTNAME", "WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID", "WEBSITE_OWNER_NAME",
    "AZURE_FUNCTIONS_ENVIRONMENT", "FUNCTIONS_WORKER_RUNTIME", "CONTAINER_NAME",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
    # TLS trust store (contract section 6): standard variables, set only by tests.
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
})
# Set by the Bicep for the Functions host or the platform, not read by our code.
HOST_SETTINGS = frozenset({
    "AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__credential",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
})

# Built-in role definition ids, checked against learn.microsoft.com's built-in roles list.
# (Storage Queue Data Contributor ends in ...5f855dd0fb88.)
ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
}
STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
APP_INSIGHTS = "Microsoft.Insights/components"
KEY_VAULT = "Microsoft.KeyVault/vaults"
# (role, type of the resource it is scoped to): exactly these for the app's identity ...
APP_ROLES = {
    (ROLE_IDS["Storage Blob Data Owner"], STORAGE_ACCOUNT),
    (ROLE_IDS["Storage Queue Data Contributor"], STORAGE_ACCOUNT),
    (ROLE_IDS["Storage Table Data Contributor"], STORAGE_ACCOUNT),
    (ROLE_IDS["Monitoring Metrics Publisher"], APP_INSIGHTS),
    (ROLE_IDS["Key Vault Secrets User"], KEY_VAULT),
}
# ... and at most these for the optional deployer (pushctl, secret rotation).
DEPLOYER_ROLES = {
    (ROLE_IDS["Storage Queue Data Contributor"], STORAGE_ACCOUNT),
    (ROLE_IDS["Storage Table Data Contributor"], STORAGE_ACCOUNT),
    (ROLE_IDS["Key Vault Secrets Officer"], KEY_VAULT),
}

# Storage binding types and the service each needs through its connection.
STORAGE_BINDINGS = {
    "queueTrigger": "queue", "queue": "queue",
    "blobTrigger": "blob", "blob": "blob",
    "table": "table",
}
CONTRACT_FUNCTIONS = ("register_channel", "send_push", "expire_channels")


# --------------------------------------------------------------------------------------------
# A small Bicep reader
# --------------------------------------------------------------------------------------------

_OPEN = {"{": "}", "[": "]", "(": ")"}
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def _string_end(text: str, i: int) -> int:
    """Index just past the Bicep string starting at text[i] == "'" (escapes, ${...} nesting)."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        assert end >= 0, f"unterminated multi-line string at {i}"
        return end + 3
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "'":
            return j + 1
        if text.startswith("${", j):
            j = _block_end(text, j + 1) + 1
            continue
        j += 1
    raise AssertionError(f"unterminated string at {i}")


def _block_end(text: str, i: int) -> int:
    """Index of the bracket closing the one at text[i], skipping strings."""
    stack = [_OPEN[text[i]]]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "'":
            j = _string_end(text, j)
            continue
        if c in _OPEN:
            stack.append(_OPEN[c])
        elif c in ")]}":
            assert c == stack.pop(), f"mismatched {c!r} at {j}"
            if not stack:
                return j
        j += 1
    raise AssertionError(f"unclosed {text[i]!r} at {i}")


def _strip_comments(text: str) -> str:
    out, j = [], 0
    while j < len(text):
        if text[j] == "'":
            end = _string_end(text, j)
            out.append(text[j:end])
            j = end
        elif text.startswith("//", j):
            j = text.find("\n", j) if "\n" in text[j:] else len(text)
        elif text.startswith("/*", j):
            j = text.index("*/", j) + 2
        else:
            out.append(text[j])
            j += 1
    return "".join(out)


def _split_top(body: str) -> list[str]:
    """Split an object or array body into its entries (newline- or comma-separated)."""
    items, start, j = [], 0, 0
    while j < len(body):
        c = body[j]
        if c == "'":
            j = _string_end(body, j)
            continue
        if c in _OPEN:
            j = _block_end(body, j) + 1
            continue
        if c in "\n,":
            items.append(body[start:j])
            start = j + 1
        j += 1
    items.append(body[start:])
    return [s.strip() for s in items if s.strip()]


def obj(expr: str) -> dict[str, str]:
    """The entries of an object literal `{ key: value ... }`, values as source text."""
    expr = expr.strip()
    assert expr.startswith("{") and _block_end(expr, 0) == len(expr) - 1, f"not an object: {expr[:60]}"
    out = {}
    for entry in _split_top(expr[1:-1]):
        m = re.match(rf"^(?:'([^']*)'|({_IDENT}))\s*:\s*(.*)$", entry, re.S)
        assert m, f"cannot read object entry {entry[:60]!r}"
        out[m.group(1) or m.group(2)] = m.group(3).strip()
    return out


def arr(expr: str) -> list[str]:
    expr = expr.strip()
    assert expr.startswith("[") and _block_end(expr, 0) == len(expr) - 1, f"not an array: {expr[:60]}"
    return _split_top(expr[1:-1])


def literal(expr: str) -> str | None:
    """The value of a plain string literal (no interpolation), else None."""
    m = re.fullmatch(r"'((?:[^'\\$]|\\.|\$(?!\{))*)'", expr.strip())
    return m.group(1).replace("\\'", "'") if m else None


@dataclass
class Resource:
    symbol: str
    type: str
    existing: bool
    condition: str | None
    loop: str | None
    body: dict[str, str]


class Bicep:
    def __init__(self, path: Path, text: str | None = None) -> None:
        self.path = path
        self.text = _strip_comments(path.read_text(encoding="utf-8") if text is None else text)

    def _value_at(self, i: int) -> str:
        """The expression starting at i: a bracketed block, or the rest of the line."""
        while self.text[i] in " \t":
            i += 1
        if self.text[i] in _OPEN:
            return self.text[i:_block_end(self.text, i) + 1]
        end = self.text.find("\n", i)
        return self.text[i:end if end >= 0 else None].strip()

    def params(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for m in re.finditer(rf"^param\s+({_IDENT})\s+{_IDENT}[ \t]*(=)?", self.text, re.M):
            out[m.group(1)] = self._value_at(m.end()) if m.group(2) else None
        return out

    def vars(self) -> dict[str, str]:
        return {m.group(1): self._value_at(m.end())
                for m in re.finditer(rf"^var\s+({_IDENT})\s*=", self.text, re.M)}

    def outputs(self) -> dict[str, str]:
        return {m.group(1): self._value_at(m.end())
                for m in re.finditer(rf"^output\s+({_IDENT})\s+{_IDENT}\s*=", self.text, re.M)}

    def _declarations(self, keyword: str) -> Iterator[tuple[str, str, bool, str | None, str | None, str]]:
        pattern = rf"^\s*{keyword}\s+({_IDENT})\s+'([^']+)'\s*(existing\s*)?="
        for m in re.finditer(pattern, self.text, re.M):
            j, loop, condition = m.end(), None, None
            while self.text[j].isspace():
                j += 1
            if self.text.startswith("[for", j):
                colon = self.text.index(":", j)
                loop = self.text[j + 1:colon].strip()
                j = colon + 1
                while self.text[j].isspace():
                    j += 1
            if self.text.startswith("if", j):
                open_paren = self.text.index("(", j)
                close = _block_end(self.text, open_paren)
                condition = self.text[open_paren + 1:close].strip()
                j = close + 1
                while self.text[j].isspace():
                    j += 1
            assert self.text[j] == "{", f"{self.path.name}: cannot read {keyword} {m.group(1)}"
            body = self.text[j:_block_end(self.text, j) + 1]
            yield m.group(1), m.group(2), bool(m.group(3)), condition, loop, body

    def resources(self) -> list[Resource]:
        return [Resource(sym, typ.split("@")[0], existing, cond, loop, obj(body))
                for sym, typ, existing, cond, loop, body in self._declarations("resource")]

    def resources_of(self, type_: str) -> list[Resource]:
        return [r for r in self.resources() if r.type == type_]

    def modules(self) -> dict[str, tuple[str, dict[str, str]]]:
        return {sym: (path, obj(body)) for sym, path, _, _, _, body in self._declarations("module")}


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def app_settings() -> dict[str, str]:
    """The function app's settings: the object api.bicep deploys as the `appsettings` config."""
    api = Bicep(API)
    configs = [r for r in api.resources_of("Microsoft.Web/sites/config")
               if literal(r.body["name"]) == "appsettings"]
    assert len(configs) == 1, "api.bicep must deploy exactly one appsettings config"
    props = configs[0].body["properties"]
    return obj(props if props.startswith("{") else api.vars()[props])


def resolve(expr: str, names: dict[str, str]) -> str:
    """A string literal or identifier, with `${ident}` interpolations of known names resolved."""
    expr = expr.strip()
    if re.fullmatch(_IDENT, expr):
        assert expr in names, f"unknown name {expr}"
        return resolve(names[expr], names)
    assert expr.startswith("'") and expr.endswith("'"), f"not a string: {expr}"

    def sub(m: re.Match[str]) -> str:
        return resolve(m.group(1), names)

    return re.sub(rf"\$\{{({_IDENT})\}}", sub, expr[1:-1])


def main_names() -> dict[str, str]:
    main = Bicep(MAIN)
    names: dict[str, str] = {k: v for k, v in main.params().items() if v is not None}
    names.update(main.vars())
    return names


# --------------------------------------------------------------------------------------------
# The code: settings it reads, function folders
# --------------------------------------------------------------------------------------------


def function_dirs() -> list[Path]:
    return sorted(p.parent for p in ROOT.glob("*/function.json"))


def function_bindings() -> dict[str, list[dict[str, object]]]:
    out = {}
    for d in function_dirs():
        data = json.loads((d / "function.json").read_text(encoding="utf-8"))
        out[d.name] = list(data.get("bindings", []))
    return out


_SETTING_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ENV_NAMES = {"env", "environ", "environment", "os.environ"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def setting_names_in_source(source: str) -> set[str]:
    """Names of settings a module reads from the environment.

    Finds `os.environ["X"]`, `os.environ.get("X")`, `os.getenv("X")`, `env.get("X")`,
    `env["X"]`, `prefix + "x"` where `prefix` is a string assigned in the module, and helper
    calls that receive the environment and a name, like `_bool(env, "X", False)`.
    """
    tree = ast.parse(source)
    constants: dict[str, str] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            constants[node.targets[0].id] = node.value.value

    def value(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = value(node.left), value(node.right)
            return left + right if left is not None and right is not None else None
        if isinstance(node, ast.JoinedStr):
            parts = [value(v.value) if isinstance(v, ast.FormattedValue) else value(v) for v in node.values]
            return "".join(p for p in parts if p is not None) if None not in parts else None
        return None

    def is_env(node: ast.AST) -> bool:
        return _dotted(node) in _ENV_NAMES or _dotted(node).endswith("environ")

    found: set[str] = set()
    for node in ast.walk(tree):
        candidates: list[ast.AST] = []
        if isinstance(node, ast.Subscript) and is_env(node.value):
            candidates.append(node.slice)
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            if (isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop", "setdefault")
                    and is_env(node.func.value)) or func in ("os.getenv", "getenv"):
                candidates.extend(node.args[:1])
            else:
                args = list(node.args)
                for k, arg in enumerate(args[:-1]):
                    if is_env(arg):
                        candidates.append(args[k + 1])
        for cand in candidates:
            name = value(cand)
            if name and _SETTING_NAME.match(name):
                found.add(name)
    return found


def code_files() -> list[Path]:
    files = sorted((ROOT / "shared").rglob("*.py"))
    for d in function_dirs():
        files.extend(sorted(d.rglob("*.py")))
    return [f for f in files if "__pycache__" not in f.parts]


def settings_the_code_reads() -> dict[str, list[str]]:
    """Setting name -> the files that read it (Python and %NAME% in function.json)."""
    out: dict[str, list[str]] = {}
    for f in code_files():
        for name in setting_names_in_source(f.read_text(encoding="utf-8")):
            out.setdefault(name, []).append(str(f.relative_to(ROOT)))
    for d in function_dirs():
        text = (d / "function.json").read_text(encoding="utf-8")
        for name in re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", text):
            out.setdefault(name, []).append(str((d / "function.json").relative_to(ROOT)))
    return out


def settings_defaults() -> dict[str, object]:
    """Settings fields (named after the setting, lower case) that have a default."""
    return {f.name: f.default for f in dataclasses.fields(settings_mod.Settings)
            if f.default is not dataclasses.MISSING}


# --------------------------------------------------------------------------------------------
# Syntax
# --------------------------------------------------------------------------------------------


def test_infra_files_exist() -> None:
    for path in (MAIN, API, STORAGE, RBAC, KEYVAULT, MONITORING, INFRA / "main.parameters.json"):
        assert path.is_file(), f"missing {path.relative_to(ROOT)}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_parses(path: Path) -> None:
    """Every file parses with pycep-parser (an offline Bicep grammar) and with the reader above."""
    pycep = pytest.importorskip("pycep", reason="pycep-parser is not installed (requirements-dev.txt)")
    pycep.BicepParser().parse(text=path.read_text(encoding="utf-8"))
    bicep = Bicep(path)
    bicep.resources()
    bicep.modules()


def test_modules_point_at_existing_files() -> None:
    modules = Bicep(MAIN).modules()
    assert {"monitoring", "storage", "keyVault", "rbac", "api"} <= set(modules)
    for sym, (path, _) in modules.items():
        assert (INFRA / path).is_file(), f"module {sym} points at missing {path}"


def test_reader_reads_what_it_should() -> None:
    """The scanner copes with comments, strings with braces and nested blocks, and says so."""
    sample = (
        "// a { comment\nvar a = {\n  k1: 'x{y'\n  'k-2': f('}')\n  k3: {\n    n: [\n      1\n    ]\n  }\n}\n"
        "var s = 'p-${a}-q'\n"
    )
    bicep = Bicep(Path("sample.bicep"), sample)
    entries = obj(bicep.vars()["a"])
    assert list(entries) == ["k1", "k-2", "k3"]
    assert entries["k1"] == "'x{y'" and literal(entries["k1"]) == "x{y"
    assert arr(obj(entries["k3"])["n"]) == ["1"]
    assert resolve("s", {"s": bicep.vars()["s"], "a": "'A'"}) == "p-A-q"


# --------------------------------------------------------------------------------------------
# (1) Settings
# --------------------------------------------------------------------------------------------


def test_code_scan_finds_known_reads() -> None:
    """The scan recognises every way settings are read today, so it does not under-report."""
    source = (
        "import os\nPREFIX = 'Conn__'\n"
        "a = os.environ['A1']\nb = os.environ.get('B1')\nc = os.getenv('C1')\n"
        "def f(env):\n    prefix = 'Store__'\n    env.get('D1')\n    env[prefix + 'accountName']\n"
        "    _bool(env, 'E1', False)\n    env.get(PREFIX + 'x')\n    helper('not_a_setting')\n"
    )
    assert setting_names_in_source(source) == {
        "A1", "B1", "C1", "D1", "Store__accountName", "E1", "Conn__x",
    }


def test_code_reads_every_contract_setting() -> None:
    reads = settings_the_code_reads()
    missing = CODE_READS_AT_LEAST - set(reads)
    assert not missing, f"the scan of shared/ and function folders found no read of {sorted(missing)}"


def test_bicep_sets_every_contract_setting() -> None:
    missing = CONTRACT_SETTINGS - set(app_settings())
    assert not missing, f"infra/app/api.bicep does not set {sorted(missing)}"


def test_every_setting_the_code_reads_is_provided() -> None:
    settings = app_settings()
    defaults = settings_defaults()
    unprovided = {}
    for name, where in settings_the_code_reads().items():
        if name in settings or name in PLATFORM_SETTINGS:
            continue
        if name.lower() in defaults:
            continue
        if name == "AzureWebJobsStorage":
            continue  # identity-based in Azure: checked in test_storage_connections_are_identity_based
        unprovided[name] = where
    assert not unprovided, (
        f"read by the code but neither set in infra/app/api.bicep nor defaulted in shared/settings.py: "
        f"{unprovided}"
    )


def test_every_bicep_setting_is_read_by_someone() -> None:
    """A misspelt setting would be silently ignored by the app; catch it here."""
    known = set(settings_the_code_reads()) | CONTRACT_SETTINGS | HOST_SETTINGS
    unknown = set(app_settings()) - known
    assert not unknown, f"infra/app/api.bicep sets settings nobody reads: {sorted(unknown)}"


def test_setting_values() -> None:
    s = app_settings()
    assert "AzureWebJobsStorage" not in s, "a plain AzureWebJobsStorage would override the identity-based settings"
    assert literal(s["AzureWebJobsStorage__credential"]) == "managedidentity"
    assert s["AzureWebJobsStorage__clientId"] == "identityClientId"
    for svc in ("blob", "queue", "table"):
        assert s[f"AzureWebJobsStorage__{svc}ServiceUri"].endswith(f"primaryEndpoints.{svc}")
    assert s["WNS_CLIENT_SECRET"].startswith("'@Microsoft.KeyVault(SecretUri=${"), "must be a Key Vault reference"
    assert "Authorization=AAD" in s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert re.fullmatch(r"enableAuth \? 'platform' : 'none'", s["PUSH_AUTH"]), s["PUSH_AUTH"]
    assert "requireUser" in s["PUSH_REQUIRE_USER"] and "enableAuth" in s["PUSH_REQUIRE_USER"]
    for name in ("WNS_AUTH", "WNS_CHANNEL_HOSTS", "EXPIRE_SCHEDULE", "PUSH_JOBS_QUEUE"):
        assert literal(s[name]) is None, f"{name} must come from a parameter, not be fixed in api.bicep"


def test_parameter_defaults_match_the_code_defaults() -> None:
    """azd up with no overrides deploys the same behaviour as the code's defaults."""
    params = Bicep(MAIN).params()
    defaults = settings_defaults()
    assert literal(params["wnsAuth"] or "") == defaults["wns_auth"]
    assert literal(params["wnsChannelHosts"] or "") == ",".join(defaults["wns_channel_hosts"])  # type: ignore[arg-type]
    assert params["channelTtlDays"] == str(defaults["channel_ttl_days"])
    assert literal(params["expireSchedule"] or "") == defaults["expire_schedule"]
    assert resolve("pushJobsQueue", main_names()) == defaults["push_jobs_queue"]
    assert params["enableAuth"] == "false" and defaults["push_auth"] == "none"
    assert params["requireUser"] == "false" and defaults["push_require_user"] is False


def test_key_vault_reference_resolves_with_the_user_assigned_identity() -> None:
    site = _site()
    assert site.body and obj(site.body["properties"])["keyVaultReferenceIdentity"] == "identityId"
    kv = Bicep(KEYVAULT)
    uri = kv.outputs()["wnsSecretUri"]
    assert uri.endswith("secrets/${secretName}/'"), "the secret URI must be versionless so rotation needs no redeploy"
    assert "wnsSecretUri" in Bicep(API).params()
    assert "keyVault.outputs.wnsSecretUri" in Bicep(MAIN).modules()["api"][1]["params"]
    assert "@secure()\nparam wnsClientSecret" in re.sub(r"\n@description\([^\n]*\)", "", Bicep(MAIN).text)
    for path in bicep_files():
        for name, value in Bicep(path).outputs().items():
            assert "wnsClientSecret" not in value, f"{path.name} outputs the secret in {name}"
            assert "secretValue" not in value, f"{path.name} outputs the secret in {name}"


# --------------------------------------------------------------------------------------------
# (2) Queues and tables
# --------------------------------------------------------------------------------------------


def _created(kind: str) -> list[str]:
    names = main_names()
    return [resolve(item, names) for item in arr(names[kind])]


def test_tables_the_code_uses_are_created() -> None:
    wanted = {str(v) for k, v in settings_defaults().items() if k.endswith("_table")}
    assert wanted, "shared/settings.py declares no *_table field"
    missing = wanted - set(_created("tableNames"))
    assert not missing, f"infra/main.bicep tableNames lacks {sorted(missing)}"


def test_queues_the_code_uses_are_created() -> None:
    queue = str(settings_defaults()["push_jobs_queue"])
    wanted = {queue, f"{queue}-poison"}
    for bindings in function_bindings().values():
        for b in bindings:
            if b.get("type") in ("queueTrigger", "queue"):
                name = str(b.get("queueName", ""))
                m = re.fullmatch(r"%(\w+)%", name)
                if m:
                    assert m.group(1) == "PUSH_JOBS_QUEUE", f"queue setting {name} is not the contract's"
                    name = queue
                wanted |= {name, f"{name}-poison"}
    missing = wanted - set(_created("queueNames"))
    assert not missing, f"infra/main.bicep queueNames lacks {sorted(missing)}"


def test_storage_module_creates_the_listed_names() -> None:
    params = Bicep(MAIN).modules()["storage"][1]["params"]
    assert obj(params)["queueNames"] == "queueNames" and obj(params)["tableNames"] == "tableNames"
    assert obj(Bicep(MAIN).modules()["api"][1]["params"])["pushJobsQueue"] == "pushJobsQueue"
    storage = Bicep(STORAGE)
    (queues,) = storage.resources_of("Microsoft.Storage/storageAccounts/queueServices/queues")
    (tables,) = storage.resources_of("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert queues.loop and queues.loop.endswith("in queueNames") and queues.body["name"] == queues.loop.split()[1]
    assert tables.loop and tables.loop.endswith("in tableNames") and tables.body["name"] == tables.loop.split()[1]
    (container,) = storage.resources_of("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container.body["name"] == "deploymentContainerName"
    assert literal(obj(container.body["properties"])["publicAccess"]) == "None"


# --------------------------------------------------------------------------------------------
# (3) Connections
# --------------------------------------------------------------------------------------------


def test_storage_connections_are_identity_based() -> None:
    needs: dict[str, set[str]] = {"AzureWebJobsStorage": {"blob", "queue", "table"}}  # host + shared/
    for fn, bindings in function_bindings().items():
        for b in bindings:
            service = STORAGE_BINDINGS.get(str(b.get("type")))
            if service:
                conn = str(b.get("connection") or "AzureWebJobsStorage")
                assert not conn.startswith("%"), f"{fn}: connection {conn} must name a setting prefix"
                needs.setdefault(conn, set()).add(service)
    s = app_settings()
    for conn, services in needs.items():
        assert conn not in s, f"{conn} is set as a plain (secret) connection string"
        assert literal(s.get(f"{conn}__credential", "")) == "managedidentity", f"{conn}__credential"
        assert s.get(f"{conn}__clientId") == "identityClientId", f"{conn}__clientId must name the app's identity"
        for svc in services:
            assert f"{conn}__{svc}ServiceUri" in s, f"{conn}__{svc}ServiceUri is not set"


# --------------------------------------------------------------------------------------------
# (4) No shared keys
# --------------------------------------------------------------------------------------------

FORBIDDEN = re.compile(
    r"AccountKey\s*=|listKeys\s*\(|listAccountSas\s*\(|listServiceSas\s*\(|SharedAccessSignature"
    r"|DefaultEndpointsProtocol|InstrumentationKey\s*=|allowSharedKeyAccess\s*:\s*true",
    re.I,
)


def test_no_key_or_connection_string_anywhere_in_infra() -> None:
    for path in sorted(p for p in INFRA.rglob("*") if p.is_file()):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not FORBIDDEN.search(line), f"{path.relative_to(ROOT)}:{n}: {line.strip()}"


def test_storage_account_is_locked_down() -> None:
    (account,) = [r for r in Bicep(STORAGE).resources_of(STORAGE_ACCOUNT) if not r.existing]
    p = obj(account.body["properties"])
    assert p["allowSharedKeyAccess"] == "false"
    assert p["allowBlobPublicAccess"] == "false"
    assert literal(p["minimumTlsVersion"]) == "TLS1_2"
    assert p["supportsHttpsTrafficOnly"] == "true"
    assert p["defaultToOAuthAuthentication"] == "true"
    for path in bicep_files():
        for r in Bicep(path).resources_of(STORAGE_ACCOUNT):
            assert r.existing or (r.symbol, path) == (account.symbol, STORAGE), f"second account in {path.name}"


def test_monitoring_and_vault_use_entra_only() -> None:
    (ai,) = [r for r in Bicep(MONITORING).resources_of(APP_INSIGHTS) if not r.existing]
    assert obj(ai.body["properties"])["DisableLocalAuth"] == "true"
    assert obj(ai.body["properties"])["WorkspaceResourceId"] == "logAnalytics.id"
    (vault,) = [r for r in Bicep(KEYVAULT).resources_of(KEY_VAULT) if not r.existing]
    p = obj(vault.body["properties"])
    assert p["enableRbacAuthorization"] == "true"
    assert p["enableSoftDelete"] == "true"
    assert "accessPolicies" not in p


def test_publishing_needs_entra_sign_in() -> None:
    policies = Bicep(API).resources_of("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {literal(r.body["name"]) for r in policies} == {"ftp", "scm"}
    assert all(obj(r.body["properties"])["allow"] == "false" and r.condition is None for r in policies)
    assert obj(_site().body["properties"])["httpsOnly"] == "true"


# --------------------------------------------------------------------------------------------
# (5) Roles
# --------------------------------------------------------------------------------------------


def test_only_known_role_ids_appear_in_infra() -> None:
    guid = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
    allowed = set(ROLE_IDS.values())
    for path in sorted(p for p in INFRA.rglob("*") if p.is_file()):
        for found in guid.findall(path.read_text(encoding="utf-8")):
            assert found.lower() in allowed, f"{path.relative_to(ROOT)} uses role/GUID {found} outside the allowed list"


def _assignments() -> list[tuple[str, str, str, str | None]]:
    """(principal param, role id, scope resource type, condition) of every role assignment."""
    out = []
    for path in bicep_files():
        bicep = Bicep(path)
        resources = {r.symbol: r for r in bicep.resources()}
        role_vars = {k: literal(v) for k, v in obj(bicep.vars().get("roles", "{}")).items()}
        for r in bicep.resources_of("Microsoft.Authorization/roleAssignments"):
            scope = r.body.get("scope", "")
            assert scope in resources and resources[scope].existing, (
                f"{path.name}:{r.symbol} must be scoped to one resource, not {scope or 'the deployment scope'}"
            )
            props = obj(r.body["properties"])
            m = re.fullmatch(r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', roles\.(\w+)\)",
                             props["roleDefinitionId"])
            assert m, f"{path.name}:{r.symbol}: roleDefinitionId must be roles.<name>: {props['roleDefinitionId']}"
            role = role_vars[m.group(1)]
            assert role, m.group(1)
            assert r.loop is None, f"{r.symbol}: no loops over role assignments"
            out.append((props["principalId"], role, resources[scope].type, r.condition))
    return out


def test_role_variable_names_match_their_ids() -> None:
    roles = {k: literal(v) for k, v in obj(Bicep(RBAC).vars()["roles"]).items()}
    by_name = {re.sub(r"\W", "", n).lower(): rid for n, rid in ROLE_IDS.items()}
    for key, rid in roles.items():
        assert by_name.get(key.lower()) == rid, f"roles.{key} = {rid} is not that built-in role"


def test_app_identity_has_exactly_the_needed_roles() -> None:
    app = [(role, scope) for principal, role, scope, cond in _assignments() if principal == "appPrincipalId"]
    assert len(app) == len(set(app)), "duplicate role assignment"
    assert set(app) == APP_ROLES
    conditions = {cond for principal, _, _, cond in _assignments() if principal == "appPrincipalId"}
    assert conditions == {None}, "the app's roles must not be conditional"


def test_deployer_roles_are_optional_and_data_only() -> None:
    assignments = _assignments()
    principals = {p for p, _, _, _ in assignments}
    assert principals <= {"appPrincipalId", "deployerPrincipalId"}, principals
    deployer = [(role, scope, cond) for p, role, scope, cond in assignments if p == "deployerPrincipalId"]
    assert {(role, scope) for role, scope, _ in deployer} <= DEPLOYER_ROLES
    assert all(cond == "!empty(deployerPrincipalId)" for _, _, cond in deployer)
    rbac = Bicep(MAIN).modules()["rbac"][1]
    assert obj(rbac["params"])["deployerPrincipalId"] == "deployerDataAccess ? principalId : ''"


# --------------------------------------------------------------------------------------------
# The function app
# --------------------------------------------------------------------------------------------


def _site() -> Resource:
    (site,) = Bicep(API).resources_of("Microsoft.Web/sites")
    return site


def test_flex_consumption_python_311() -> None:
    api = Bicep(API)
    (plan,) = api.resources_of("Microsoft.Web/serverfarms")
    sku = obj(plan.body["sku"])
    assert (literal(sku["name"]), literal(sku["tier"])) == ("FC1", "FlexConsumption")
    assert obj(plan.body["properties"])["reserved"] == "true"
    site = _site()
    assert "linux" in (literal(site.body["kind"]) or "")
    ident = obj(site.body["identity"])
    assert literal(ident["type"]) == "UserAssigned"
    config = obj(obj(site.body["properties"])["functionAppConfig"])
    runtime = obj(config["runtime"])
    assert (literal(runtime["name"]), literal(runtime["version"])) == ("python", "3.11")
    scale = obj(config["scaleAndConcurrency"])
    assert scale == {"instanceMemoryMB": "instanceMemoryMB", "maximumInstanceCount": "maximumInstanceCount"}
    deploy = obj(obj(config["deployment"])["storage"])
    assert literal(deploy["type"]) == "blobContainer"
    auth = obj(deploy["authentication"])
    assert literal(auth["type"]) == "UserAssignedIdentity" and auth["userAssignedIdentityResourceId"] == "identityId"
    main = Bicep(MAIN)
    assert {"instanceMemoryMB", "maximumInstanceCount"} <= set(main.params())
    api_params = obj(main.modules()["api"][1]["params"])
    assert api_params["instanceMemoryMB"] == "instanceMemoryMB"
    assert api_params["maximumInstanceCount"] == "maximumInstanceCount"


def test_authentication_is_optional_and_lets_anonymous_through() -> None:
    configs = [r for r in Bicep(API).resources_of("Microsoft.Web/sites/config")
               if literal(r.body["name"]) == "authsettingsV2"]
    assert len(configs) == 1 and configs[0].condition == "enableAuth"
    props = obj(configs[0].body["properties"])
    validation = obj(props["globalValidation"])
    assert validation["requireAuthentication"] == "false"
    assert literal(validation["unauthenticatedClientAction"]) == "AllowAnonymous"
    aad = obj(obj(props["identityProviders"])["azureActiveDirectory"])
    assert obj(aad["registration"])["clientId"] == "authClientId"
    assert {"enableAuth", "authClientId", "requireUser"} <= set(Bicep(MAIN).params())


def test_outputs_and_parameters_for_azd() -> None:
    main = Bicep(MAIN)
    outputs = main.outputs()
    for name in ("AZURE_LOCATION", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME",
                 "SERVICE_API_NAME", "AZURE_FUNCTION_URL", "AZURE_STORAGE_ACCOUNT_NAME",
                 "AZURE_KEY_VAULT_NAME", "WNS_SECRET_NAME"):
        assert name in outputs, f"main.bicep output {name} missing"
    params = main.params()
    file_params = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(file_params) <= set(params), f"main.parameters.json sets unknown {set(file_params) - set(params)}"
    required = {k for k, v in params.items() if v is None}
    assert required <= set(file_params), f"required parameters not mapped for azd: {required - set(file_params)}"
    assert "wnsClientSecret" not in file_params, "the WNS secret must not be taken from the azd environment file"
    assert "'azd-service-name': serviceName" in _site().body["tags"]
    assert literal(Bicep(API).params()["serviceName"] or "") == "api"
    yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    service = re.search(r"^services:\n  api:\n((?:    .*\n)+)", yaml, re.M)
    assert service, "azure.yaml must declare service api"
    fields = dict(re.findall(r"^    (\w+): (\S+)", service.group(1), re.M))
    assert fields == {"project": ".", "language": "python", "host": "function"}


# --------------------------------------------------------------------------------------------
# (6) What gets published
# --------------------------------------------------------------------------------------------


class CoreToolsIgnore:
    """Port of Azure Functions Core Tools' GitIgnoreParser (src/Azure.Functions.Cli/Common).

    Not gitignore: each pattern is a regex anchored at the start of the relative path (so `tests/`
    only matches at the root, `*` never crosses `/` and needs one character, `**` needs one).
    Core Tools also always skips `.git` and `.vscode` folders and the files `.funcignore`,
    `.gitignore`, `local.settings.json` and `project.lock.json` (FileSystemHelpers.GetLocalFiles).
    """

    SKIP_DIRS = frozenset({".git", ".vscode"})
    SKIP_FILES = frozenset({".funcignore", ".gitignore", "local.settings.json", "project.lock.json"})

    def __init__(self, text: str) -> None:
        positive: list[str] = []
        negative: list[str] = []
        for line in (raw.strip() for raw in text.split("\n")):
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            line = line[1:] if neg else line
            line = line[1:] if line.startswith("/") else line
            (negative if neg else positive).append(self._pattern(line))
        self._pos = re.compile("^((" + ")|(".join(sorted(positive)) + "))") if positive else None
        self._neg = re.compile("^((" + ")|(".join(sorted(negative)) + "))") if negative else None

    @staticmethod
    def _pattern(p: str) -> str:
        escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), p)
        return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")

    def excludes(self, rel: str) -> bool:
        parts = rel.split("/")
        if any(d.lower() in self.SKIP_DIRS for d in parts[:-1]):
            return True
        if parts[-1].lower() in self.SKIP_FILES:
            return True
        accepted = bool(self._neg and self._neg.match(rel)) or not (self._pos and self._pos.match(rel))
        return not accepted


class AzdIgnore:
    """`azd deploy`: .funcignore read with gitignore semantics, local.settings.json always out."""

    def __init__(self, text: str) -> None:
        pathspec = pytest.importorskip("pathspec", reason="pathspec is not installed (requirements-dev.txt)")
        self._spec = pathspec.GitIgnoreSpec.from_lines(text.splitlines())

    def excludes(self, rel: str) -> bool:
        return rel.split("/")[-1] == "local.settings.json" or self._spec.match_file(rel)


def _funcignore() -> str:
    path = ROOT / ".funcignore"
    assert path.is_file(), ".funcignore is missing"
    return path.read_text(encoding="utf-8")


def _matchers() -> list[CoreToolsIgnore | AzdIgnore]:
    text = _funcignore()
    return [CoreToolsIgnore(text), AzdIgnore(text)]


def _repo_files() -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d != ".git"]  # both tools exclude it (checked below)
        rel_dir = os.path.relpath(dirpath, ROOT).replace(os.sep, "/")
        for f in filenames:
            files.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return files


@pytest.fixture(scope="module", params=["core-tools", "azd"])
def package(request: pytest.FixtureRequest) -> tuple[CoreToolsIgnore | AzdIgnore, set[str]]:
    matcher = _matchers()[0 if request.param == "core-tools" else 1]
    return matcher, {f for f in _repo_files() if not matcher.excludes(f)}


# Top-level entries the package may hold besides function folders.
PACKAGE_TOP = {"host.json", "requirements.txt", "shared", ".python_packages"}


def test_package_holds_the_app(package: tuple[CoreToolsIgnore | AzdIgnore, set[str]]) -> None:
    _, files = package
    assert {"host.json", "requirements.txt", "shared/__init__.py"} <= files
    shared = {str(p.relative_to(ROOT)).replace(os.sep, "/") for p in (ROOT / "shared").rglob("*.py")
              if "__pycache__" not in p.parts}
    assert shared <= files, f"shared modules left out: {sorted(shared - files)}"
    for d in function_dirs():
        for f in d.rglob("*"):
            rel = str(f.relative_to(ROOT)).replace(os.sep, "/")
            if f.is_file() and "__pycache__" not in f.parts:
                assert rel in files, f"function file left out: {rel}"


def test_package_holds_nothing_else(package: tuple[CoreToolsIgnore | AzdIgnore, set[str]]) -> None:
    _, files = package
    allowed_top = PACKAGE_TOP | {d.name for d in function_dirs()}
    stray = sorted(f for f in files if f.split("/")[0] not in allowed_top)
    assert not stray, f"would be published: {stray[:20]}"
    caches = sorted(f for f in files if "__pycache__" in f.split("/") or f.endswith((".pyc", ".md")))
    assert not caches, f"would be published: {caches[:20]}"


@pytest.mark.parametrize("rel", [
    "tests/unit/test_x.py", "tests/conftest.py", "infra/main.bicep", "infra/app/api.bicep",
    "bench/run.py", "node_modules/azurite/package.json", ".venv/bin/python", ".venv/pyvenv.cfg",
    "local.settings.json", "local.settings.example.json", "devhost/__main__.py", "pushctl/__main__.py",
    "pushctl/cli.py", "docs/deploy.md", "README.md", ".ci/run", "bin/tool", "azure.yaml",
    "package.json", "package-lock.json", "requirements-dev.txt", "pyproject.toml",
    "shared/__pycache__/settings.cpython-311.pyc", "send_push/__pycache__/__init__.cpython-311.pyc",
    "__pycache__/x.pyc", ".git/config", ".github/workflows/ci.yml", ".gitignore", ".funcignore",
    ".pytest_cache/v/cache", ".mypy_cache/x.json", ".ruff_cache/x", ".devrun/azurite.log",
    "__azurite_db_table__.json", ".env", ".vscode/settings.json", ".coverage", "htmlcov/index.html",
])
def test_excluded(rel: str) -> None:
    for matcher in _matchers():
        assert matcher.excludes(rel), f"{type(matcher).__name__} would publish {rel}"


@pytest.mark.parametrize("rel", [
    "host.json", "requirements.txt", "shared/__init__.py", "shared/settings.py", "shared/sub/mod.py",
    "send_push/__init__.py", "send_push/function.json", "register_channel/function.json",
    "expire_channels/__init__.py", ".python_packages/lib/site-packages/x.py",
])
def test_included(rel: str) -> None:
    for matcher in _matchers():
        assert not matcher.excludes(rel), f"{type(matcher).__name__} would leave out {rel}"


@pytest.mark.parametrize("name", CONTRACT_FUNCTIONS)
def test_contract_function_is_published(name: str) -> None:
    folder = ROOT / name
    if not (folder / "function.json").is_file():
        pytest.skip(f"{name}/function.json does not exist yet: nothing to publish")
    for matcher in _matchers():
        assert not matcher.excludes(f"{name}/function.json")
        assert not matcher.excludes(f"{name}/__init__.py")


def test_core_tools_port_behaves_like_core_tools() -> None:
    """The port keeps Core Tools' quirks, which is why .funcignore spells some names twice."""
    m = CoreToolsIgnore("tests/\n*.md\n__pycache__\nlocal.settings*.json\n!keep.md\n")
    assert m.excludes("tests/a.py") and not m.excludes("x/tests/a.py")  # anchored at the root
    assert m.excludes("README.md") and not m.excludes("docs/README.md")  # * stays in one segment
    assert not m.excludes("keep.md")  # negation
    assert m.excludes("__pycache__/a.pyc") and not m.excludes("shared/__pycache__/a.pyc")
    assert m.excludes("local.settings.json")  # by name, whatever the patterns say
    assert not CoreToolsIgnore("local.settings*.json").excludes("sub/local.settings2.json")


# --------------------------------------------------------------------------------------------
# docs/deploy.md describes the same knobs
# --------------------------------------------------------------------------------------------


def test_deploy_doc_names_every_knob() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    params = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    env_vars = {m for p in params.values() for m in re.findall(r"\$\{(\w+)", str(p["value"]))}
    env_vars -= {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID"}
    missing = sorted(v for v in env_vars | set(params) if v not in doc)
    assert not missing, f"docs/deploy.md does not mention {missing}"
    names = main_names()
    for fixed in ("wnsSecretName", "pushJobsQueue"):
        assert resolve(fixed, names) in doc, f"docs/deploy.md does not name {resolve(fixed, names)}"
    for table in _created("tableNames") + _created("queueNames"):
        assert f"`{table}`" in doc, f"docs/deploy.md does not list {table}"
