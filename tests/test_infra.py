"""The deployment (infra/, azure.yaml) checked against the code, since the Bicep compiler is not available here.

Three kinds of checks:

* every `.bicep` file parses (pycep-parser) and checkov finds nothing beyond infra/checkov-baseline.json;
* the code and the infrastructure agree: every setting the code reads is set by the Function App's app
  settings (discovered by scanning the code, not copied by hand), every table and queue it uses is created,
  and every Azure operation in shared/azure/operations.py is covered by a role granted on each monitored
  subscription (evaluated with Azure's wildcard semantics);
* the security shape the README promises: identity-based storage, Entra-only telemetry, Key Vault references
  for webhook secrets, deterministic role assignment names, the stalled-cycles alert.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from devtools.devhost import DEFAULT_SCHEDULES, FAMILY_OF_SCHEDULE
from shared.azure.operations import CUSTOM_ROLES, OPERATIONS
from shared.functions import ncrontab
from shared.monitor.queues import CHECK_QUEUE, POISON_SUFFIX, QUEUES
from shared.notify import channels
from shared.store import connection
from shared.store.tables import DEFAULT_TABLES

pycep = pytest.importorskip("pycep", reason="pycep-parser is not installed (pip install pycep-parser)")

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV_BASELINE = INFRA / "checkov-baseline.json"

# Built-in roles, with the actions Azure defines for them (az role definition list --name ...).
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
MONITORING_READER = "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
BUILT_IN_ACTIONS: Mapping[str, tuple[str, ...]] = {
    READER: ("*/read",),
    MONITORING_READER: ("*/read", "Microsoft.OperationalInsights/workspaces/search/action", "Microsoft.Support/*"),
}
BUILT_IN_NAMES = {"Reader": READER, "Monitoring Reader": MONITORING_READER}
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

# Settings read by libraries or the Functions host rather than by our code, which the deployment must set.
LIBRARY_SETTINGS: Mapping[str, str] = {
    "AZURE_CLIENT_ID": "DefaultAzureCredential picks the user-assigned identity with it",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the Functions host authenticates telemetry with Entra ID "
                                                 "(App Insights local auth is disabled)",
}

# Settings the code reads that the deployment may leave out, and why.
MAY_BE_ABSENT: Mapping[str, str] = {
    connection.SETTING: "the connection-string form; Azure uses the identity-based AzureWebJobsStorage__* "
                        "settings instead (shared keys are disabled on the account)",
}
# Settings set only when the operator configures them: unset is how the code turns a channel off.
OPTIONAL_SECRETS: Mapping[str, str] = {
    channels.TEAMS_URL_SETTING: "Teams is off unless teamsWebhookUrl is given",
    channels.SLACK_URL_SETTING: "Slack is off unless slackWebhookUrl is given",
    channels.WEBHOOK_URL_SETTING: "the generic webhook is off unless alertWebhookUrl is given",
    channels.WEBHOOK_SECRET_SETTING: "only meaningful with ALERT_WEBHOOK_URL",
}
# local.settings.json.example entries that are local-only, and why the deployment does not set them.
LOCAL_ONLY: Mapping[str, str] = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption rejects it; the runtime is functionAppConfig.runtime",
    "AzureWebJobsFeatureFlags": "EnableWorkerIndexing is the default for the Python v2 model on Functions 4.x",
}
# Identity-based host storage: the names the Functions host and shared/store/connection.py need.
IDENTITY_STORAGE = {
    f"{connection.SETTING}__accountName",
    f"{connection.SETTING}__credential",
    f"{connection.SETTING}__clientId",
    f"{connection.SETTING}__tableServiceUri",
    f"{connection.SETTING}__queueServiceUri",
}

# How the code reads settings. Each pattern captures the setting name.
_READ_PATTERNS = (
    re.compile(r"""\b(?:env|environ|source)\s*\.get\(\s*["']([A-Za-z_]\w*)["']"""),  # env.get("X"), os.environ.get
    re.compile(r"""\b(?:env|environ|source)\s*\[\s*["']([A-Za-z_]\w*)["']\s*\]"""),  # env["X"]
    re.compile(r"""\bgetenv\(\s*["']([A-Za-z_]\w*)["']"""),  # os.getenv("X")
    re.compile(r"""\(\s*env\s*,\s*["']([A-Za-z_]\w*)["']"""),  # helpers: _int(env, "X", ...)
    re.compile(r"""["']%([A-Za-z_]\w*)%["']"""),  # binding expressions: schedule="%X%"
)
_SETTING_CONSTANT = re.compile(r"""^([A-Z_]*SETTING)\s*=\s*["']([A-Za-z_]\w*)["']""", re.MULTILINE)


# ---------------------------------------------------------------- parsing helpers


@cache
def bicep(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = pycep.BicepParser().parse(file_path=path)
    return result


def main_bicep() -> dict[str, Any]:
    return bicep(INFRA / "main.bicep")


def module(name: str) -> dict[str, Any]:
    return bicep(MODULES / name)


def unquote(key: str) -> str:
    """pycep keeps the quotes of quoted object keys ('node-probes')."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def resource_body(resource: Mapping[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """(body, condition, loop) of a resource or module, whether plain, conditional or looped."""
    config = resource["config"]
    if "loop_type" in config or ("condition" in config and "config" in config):
        return config["config"], config.get("condition"), config.get("loop_type")
    return config, None, None


def resources_of_type(parsed: Mapping[str, Any], type_name: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in parsed.get("resources", {}).items()
            if r["type"].lower() == type_name.lower() and not r.get("existing")}


def variable(parsed: Mapping[str, Any], name: str) -> Any:
    return parsed["variables"][name]["value"]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@dataclass(frozen=True)
class Setting:
    value: Any
    conditional: bool  # only present under some parameter values


class Scope:
    """Resolves identifiers the way Bicep does: variables first, then parameters (whose value may come from
    the caller, e.g. main.bicep's module params)."""

    def __init__(self, parsed: Mapping[str, Any], args: Mapping[str, Any] | None = None,
                 caller: Scope | None = None) -> None:
        self.parsed = parsed
        self.args = args or {}
        self.caller = caller

    def resolve(self, name: str) -> tuple[Any, Scope] | None:
        if name in self.parsed.get("variables", {}):
            return variable(self.parsed, name), self
        if name in self.args and self.caller is not None:
            return self.args[name], self.caller
        return None


def collect_settings(expr: Any, scope: Scope, conditional: bool = False) -> dict[str, Setting]:
    """Every key an app-settings expression can produce: object literals, union(), a ? b : c, identifiers."""
    if isinstance(expr, str):
        resolved = scope.resolve(expr)
        assert resolved is not None, f"app settings use {expr!r}, which is neither a variable nor a passed parameter"
        return collect_settings(resolved[0], resolved[1], conditional)
    assert isinstance(expr, dict), f"unexpected app settings expression {expr!r}"
    if "function" in expr:
        function = expr["function"]
        assert function["type"] == "union", f"app settings built with {function['type']}(), not understood here"
        found: dict[str, Setting] = {}
        for arg in function["parameters"].values():
            found.update(collect_settings(arg, scope, conditional))
        return found
    if "operator" in expr:
        operator = expr["operator"]
        assert operator["type"] == "conditional", f"app settings built with {operator['type']}"
        found = {}
        for branch in ("true_value", "false_value"):
            found.update(collect_settings(operator["operands"][branch], scope, True))
        return found
    return {unquote(key): Setting(value, conditional) for key, value in expr.items()}


@cache
def app_settings() -> dict[str, Setting]:
    """The Function App's app settings, as main.bicep + modules/functionapp.bicep build them."""
    app = module("functionapp.bicep")
    configs = [body for r in resources_of_type(app, "Microsoft.Web/sites/config").values()
               for body in [resource_body(r)[0]] if body["name"] == "appsettings"]
    assert len(configs) == 1, "modules/functionapp.bicep must have exactly one sites/config 'appsettings'"
    calls = [r for r in main_bicep()["modules"].values() if r["detail"]["path"] == "modules/functionapp.bicep"]
    assert len(calls) == 1, "main.bicep must deploy modules/functionapp.bicep once"
    caller_args = resource_body(calls[0])[0]["params"]
    scope = Scope(app, caller_args, Scope(main_bicep()))
    return collect_settings(configs[0]["properties"], scope)


def param_default(parsed: Mapping[str, Any], expr: Any) -> Any:
    """The default of the parameter an app setting is taken from (directly or through string())."""
    if isinstance(expr, dict) and expr.get("function", {}).get("type") == "string":
        expr = next(iter(expr["function"]["parameters"].values()))
    if isinstance(expr, str) and expr in parsed["parameters"]:
        return parsed["parameters"][expr].get("default")
    return None


# ---------------------------------------------------------------- discovering what the code reads


def code_files() -> list[Path]:
    return [*sorted((REPO / "shared").rglob("*.py")), REPO / "function_app.py"]


def settings_read_in(text: str) -> set[str]:
    return {m.group(1) for pattern in _READ_PATTERNS for m in pattern.finditer(text)}


@cache
def settings_the_code_reads() -> frozenset[str]:
    found: set[str] = set()
    for path in code_files():
        text = path.read_text(encoding="utf-8")
        found |= settings_read_in(text)
        found |= {m.group(2) for m in _SETTING_CONSTANT.finditer(text)}
    found |= set(DEFAULT_SCHEDULES)
    return frozenset(found)


def test_discovery_recognises_every_way_the_code_reads_a_setting() -> None:
    sample = '''
        a = env.get("ONE", "")
        b = os.environ.get('TWO')
        c = env["THREE"]
        d = os.getenv("FOUR")
        e = _int(env, "FIVE", 15, 1, 1440)
        @bp.timer_trigger(schedule="%SIX%")
        env.update({"NOT_A_READ": "x"})
    '''
    assert settings_read_in(sample) == {"ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX"}


def test_discovery_finds_the_known_settings() -> None:
    """Anchors, so a broken pattern cannot make the cross-check below pass vacuously."""
    discovered = settings_the_code_reads()
    expected = {"MONITOR_SUBSCRIPTIONS", "ARM_ENDPOINT", "ARM_SCOPE", "NODE_PROBES", "SNAT_WINDOW_MINUTES",
                "ACTIVITY_WINDOW_HOURS", "REMINDER_HOURS", "PROBE_SAMPLE_PER_POOL", "ARM_READS_PER_SECOND",
                "ARM_READ_BURST", "APPLICATIONINSIGHTS_CONNECTION_STRING", "AzureWebJobsStorage",
                "TEAMS_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_SECRET",
                "WEBHOOK_ALLOWED_HOSTS", *DEFAULT_SCHEDULES}
    assert expected <= discovered, f"not discovered: {sorted(expected - discovered)}"


# ---------------------------------------------------------------- parse + lint


def test_there_is_infrastructure_to_check() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    assert {"main.bicep", "modules/functionapp.bicep", "modules/storage.bicep",
            "modules/subscription-access.bicep", "modules/custom-roles.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_parses(path: Path) -> None:
    parsed = bicep(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path.name} declares nothing"


def test_every_module_reference_points_at_a_file() -> None:
    """What `bicep build` would catch first: a module path that does not exist."""
    for path in BICEP_FILES:
        for name, mod in bicep(path).get("modules", {}).items():
            target = (path.parent / mod["detail"]["path"]).resolve()
            assert target.is_file(), f"{path.name}: module {name} points at missing {mod['detail']['path']}"


def test_main_parameters_file_matches_main_bicep() -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main_bicep()["parameters"]
    assert set(params) <= set(declared), f"unknown parameters: {sorted(set(params) - set(declared))}"
    for name, entry in params.items():
        secure = any(d["type"] == "secure" for d in declared[name]["decorators"])
        if secure:  # never a literal secret in the repository: only ${ENV} references for azd to substitute
            assert re.fullmatch(r"\$\{[A-Z_]+=?\}", entry["value"]), f"{name} must come from the azd environment"
    required = {n for n, p in declared.items() if "default" not in p}
    assert required <= set(params), f"azd would prompt for {sorted(required - set(params))}"


def test_azure_yaml_declares_the_function_service() -> None:
    text = (REPO / "azure.yaml").read_text()
    service = re.search(r"^services:\n  api:\n((?:    .*\n)+)", text, re.MULTILINE)
    assert service, "azure.yaml needs a service named api"
    fields = dict(re.findall(r"^    (\w+):\s*(\S+)", service.group(1), re.MULTILINE))
    assert fields == {"project": ".", "language": "python", "host": "function"}


# ---------------------------------------------------------------- settings


def test_every_setting_the_code_reads_is_set_in_azure() -> None:
    settings = app_settings()
    wanted = (settings_the_code_reads() | set(LIBRARY_SETTINGS)) - set(MAY_BE_ABSENT)
    missing = sorted(name for name in wanted if name not in settings)
    assert not missing, f"read by the code but not set by the Bicep app settings: {missing}"
    always = sorted(n for n in wanted - set(OPTIONAL_SECRETS) if settings[n].conditional)
    assert not always, f"only set under some parameter values, but the code needs them: {always}"


def test_local_settings_example_and_bicep_agree() -> None:
    example = json.loads((REPO / "local.settings.json.example").read_text())["Values"]
    settings = app_settings()
    unknown = sorted(n for n in example if n not in settings and n not in MAY_BE_ABSENT and n not in LOCAL_ONLY)
    assert not unknown, f"in local.settings.json.example but not deployed: {unknown}"
    # Defaults: a Bicep parameter default must equal the documented local default.
    compared = 0
    for name, local_value in example.items():
        if name in settings and local_value:
            default = param_default(main_bicep(), settings[name].value)
            if default is not None:
                assert str(default) == local_value, f"{name}: Bicep default {default!r} != example {local_value!r}"
                compared += 1
    assert compared >= len(DEFAULT_SCHEDULES) + 3


def test_schedule_defaults_match_the_code() -> None:
    settings = app_settings()
    for name, default in DEFAULT_SCHEDULES.items():
        assert param_default(main_bicep(), settings[name].value) == default, name


def test_numeric_defaults_match_the_code() -> None:
    text = (REPO / "shared" / "settings.py").read_text()
    code_defaults = dict(re.findall(r"""_int\(\s*env\s*,\s*["'](\w+)["']\s*,\s*(\d+)""", text))
    assert len(code_defaults) >= 6
    settings = app_settings()
    for name, default in code_defaults.items():
        assert str(param_default(main_bicep(), settings[name].value)) == default, name


def test_node_probes_setting_follows_enable_node_probes() -> None:
    """Without the probe role the monitor must not try run-command (it would only collect 403s)."""
    expr = app_settings()["NODE_PROBES"].value
    operator = expr["operator"]
    assert operator["type"] == "conditional"
    assert operator["operands"]["true_value"] == "nodeProbes"
    assert operator["operands"]["false_value"] == "off"
    grant = variable(main_bicep(), operator["operands"]["condition"])
    assert "enableNodeProbes" in json.dumps(grant)
    assert "nodeProbes" in json.dumps(grant)
    node_probes = main_bicep()["parameters"]["nodeProbes"]
    allowed = next(d["argument"] for d in node_probes["decorators"] if d["type"] == "allowed")
    assert set(allowed) == {"off", "sample", "all"}
    assert node_probes["default"] == "sample"


def test_webhook_settings_are_key_vault_references_present_only_when_configured() -> None:
    settings = app_settings()
    for name in OPTIONAL_SECRETS:
        assert settings[name].conditional, f"{name} must be absent when not configured"
        assert str(settings[name].value).startswith("@Microsoft.KeyVault("), f"{name} must be a Key Vault reference"
    secure = {n for n, p in main_bicep()["parameters"].items() if any(d["type"] == "secure" for d in p["decorators"])}
    assert {"teamsWebhookUrl", "slackWebhookUrl", "alertWebhookUrl", "alertWebhookSecret"} <= secure


def test_key_vault_secrets_are_created_only_with_a_value_and_readable_by_the_identity() -> None:
    vault_file = module("keyvault.bicep")
    (vault,) = resources_of_type(vault_file, "Microsoft.KeyVault/vaults").values()
    assert resource_body(vault)[0]["properties"]["enableRbacAuthorization"] is True
    secrets = resources_of_type(vault_file, "Microsoft.KeyVault/vaults/secrets")
    assert len(secrets) == len(OPTIONAL_SECRETS)
    for name, secret in secrets.items():
        body, condition, _ = resource_body(secret)
        assert condition is not None, f"secret {name} must be conditional on its value"
        assert body["properties"].get("contentType"), f"secret {name} needs a contentType"
    assert KEY_VAULT_SECRETS_USER in role_guids_assigned(vault_file)


def test_identity_based_storage_and_entra_telemetry() -> None:
    settings = app_settings()
    assert set(settings) >= IDENTITY_STORAGE
    assert settings[f"{connection.SETTING}__credential"].value == "managedidentity"
    assert connection.SETTING not in settings, "a connection string would need shared keys"
    auth = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].value
    assert "Authorization=AAD" in auth
    assert "ClientId=${identityClientId}" in auth
    assert settings["AZURE_CLIENT_ID"].value == "identityClientId"
    (insights,) = resources_of_type(module("monitoring.bicep"), "Microsoft.Insights/components").values()
    assert resource_body(insights)[0]["properties"]["DisableLocalAuth"] is True


def test_function_app_is_flex_consumption_python_311() -> None:
    app = module("functionapp.bicep")
    (plan,) = resources_of_type(app, "Microsoft.Web/serverfarms").values()
    assert resource_body(plan)[0]["sku"]["name"] == "FC1"
    (site,) = resources_of_type(app, "Microsoft.Web/sites").values()
    body = resource_body(site)[0]
    assert body["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert body["properties"]["httpsOnly"] is True
    assert body["identity"]["type"] == "UserAssigned"
    deployment = body["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"
    assert body["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


def test_storage_account_is_locked_to_entra_id() -> None:
    (account,) = resources_of_type(module("storage.bicep"), "Microsoft.Storage/storageAccounts").values()
    props = resource_body(account)[0]["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True


# ---------------------------------------------------------------- tables and queues


def looped_names(parsed: Mapping[str, Any], type_name: str) -> set[str]:
    names: set[str] = set()
    for resource in resources_of_type(parsed, type_name).values():
        body, _, loop = resource_body(resource)
        if loop is None:
            names.add(body["name"])
        else:
            names |= set(variable(parsed, loop["detail"]["array_name"]))
    return names


def test_every_table_the_code_uses_is_created() -> None:
    created = looped_names(module("storage.bicep"), "Microsoft.Storage/storageAccounts/tableServices/tables")
    missing = sorted(set(DEFAULT_TABLES.all()) - created)
    assert not missing, f"tables the code uses but Bicep does not create: {missing}"


def test_every_queue_the_code_uses_is_created() -> None:
    created = looped_names(module("storage.bicep"), "Microsoft.Storage/storageAccounts/queueServices/queues")
    wanted = {*QUEUES, CHECK_QUEUE + POISON_SUFFIX}
    missing = sorted(wanted - created)
    assert not missing, f"queues the code uses but Bicep does not create: {missing}"
    for name in created:
        assert re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]", name), f"invalid queue name {name}"


# ---------------------------------------------------------------- roles


def covers(granted: str, action: str) -> bool:
    """Azure RBAC: `*` matches any run of characters, comparison is case-insensitive."""
    pattern = ".*".join(re.escape(part) for part in granted.split("*"))
    return re.fullmatch(pattern, action, re.IGNORECASE) is not None


def test_wildcard_semantics() -> None:
    assert covers("*/read", "Microsoft.Compute/virtualMachineScaleSets/read")
    assert covers("*/read", "microsoft.insights/METRICS/read")
    assert covers("Microsoft.Support/*", "Microsoft.Support/tickets/write")
    assert not covers("*/read", "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action")
    assert not covers("*/read", "Microsoft.Network/virtualNetworks/readSomething/action")
    assert not covers("Microsoft.Compute/*/read", "Microsoft.Network/networkSecurityGroups/read")


def custom_role_actions() -> dict[str, set[str]]:
    roles = variable(module("custom-roles.bicep"), "customRoles")
    return {unquote(key): set(role.get("actions", ())) for key, role in roles.items()}


def custom_role_data_actions() -> dict[str, set[str]]:
    roles = variable(module("custom-roles.bicep"), "customRoles")
    return {unquote(key): set(role.get("dataActions", ())) for key, role in roles.items()}


def role_guids_assigned(parsed: Mapping[str, Any]) -> set[str]:
    """GUIDs of the role definitions a file's role assignments name (literal, via variables, or looped)."""
    guids: set[str] = set()
    for resource in resources_of_type(parsed, "Microsoft.Authorization/roleAssignments").values():
        body, _, loop = resource_body(resource)
        role_id = body["properties"]["roleDefinitionId"]
        argument = role_id["function"]["parameters"] if isinstance(role_id, dict) else {}
        for value in argument.values():
            if not isinstance(value, str) or value.startswith("Microsoft."):
                continue
            if loop is not None and value == loop["detail"]["item_name"]:
                array = loop["detail"]["array_name"]
                if array in parsed.get("variables", {}):
                    guids |= {variable(parsed, v) if v in parsed["variables"] else v for v in variable(parsed, array)}
            elif value in parsed.get("variables", {}):
                guids.add(variable(parsed, value))
    return guids


def test_custom_roles_hold_exactly_the_actions_operations_py_lists() -> None:
    expected: dict[str, set[str]] = {key: set() for key in CUSTOM_ROLES}
    expected_data: dict[str, set[str]] = {key: set() for key in CUSTOM_ROLES}
    for op in OPERATIONS:
        if op.role in expected:
            (expected_data if op.data_action else expected)[op.role].add(op.action)
    assert custom_role_actions() == expected
    assert custom_role_data_actions() == expected_data
    roles = variable(module("custom-roles.bicep"), "customRoles")
    for key, role in roles.items():
        assert role["description"] == CUSTOM_ROLES[unquote(key)]
    definitions = resources_of_type(module("custom-roles.bicep"), "Microsoft.Authorization/roleDefinitions")
    for definition in definitions.values():
        (permissions,) = resource_body(definition)[0]["properties"]["permissions"]
        assert permissions["notActions"] == permissions["notDataActions"] == []
        # Each definition takes its lists from its own customRoles entry: actions or dataActions, never both.
        granted = json.dumps([permissions["actions"], permissions["dataActions"]])
        assert (permissions["actions"] == []) != (permissions["dataActions"] == []), granted


def test_node_probe_role_is_defined_only_when_enabled() -> None:
    definitions = resources_of_type(module("custom-roles.bicep"), "Microsoft.Authorization/roleDefinitions")
    conditions = {name: resource_body(r)[1] for name, r in definitions.items()}
    probe_definitions = [n for n, r in definitions.items()
                         if "node-probes" in json.dumps(resource_body(r)[0]["properties"]["permissions"])]
    assert probe_definitions, "no role definition uses customRoles['node-probes']"
    for name in probe_definitions:
        assert conditions[name] == "enableNodeProbes", f"{name} must be conditional on enableNodeProbes"
    output = module("custom-roles.bicep")["outputs"]["roleDefinitionGuids"]["value"]
    assert output["operator"]["operands"]["condition"] == "enableNodeProbes"


def test_every_monitored_subscription_gets_the_access_module() -> None:
    calls = [m for m in main_bicep()["modules"].values()
             if m["detail"]["path"] == "modules/subscription-access.bicep"]
    assert len(calls) == 1
    body, _, loop = resource_body(calls[0])
    assert loop is not None, "subscription access must loop over the monitored subscriptions"
    assert body["scope"]["function"]["type"] == "subscription"
    assert body["scope"]["function"]["parameters"]["subscription_id"] == loop["detail"]["item_name"]
    assert "monitoredSubscriptionIds" in json.dumps(main_bicep()["variables"]), "list must come from the parameter"
    assert main_bicep()["parameters"]["monitoredSubscriptionIds"]["type"] == "array"
    monitored = app_settings()["MONITOR_SUBSCRIPTIONS"].value
    assert monitored["function"]["type"] == "join"
    assert loop["detail"]["array_name"] in json.dumps(monitored), "MONITOR_SUBSCRIPTIONS must list the same ids"


def granted_actions(node_probes: bool) -> list[str]:
    access = module("subscription-access.bicep")
    actions = [a for guid in role_guids_assigned(access) for a in BUILT_IN_ACTIONS.get(guid, ())]
    custom = custom_role_actions()
    actions += sorted(custom["network-actions"])
    if node_probes:
        actions += sorted(custom["node-probes"])
    return actions


def test_built_in_roles_assigned_on_each_subscription() -> None:
    assert role_guids_assigned(module("subscription-access.bicep")) == {READER, MONITORING_READER}


@pytest.mark.parametrize("node_probes", [True, False], ids=["probes-on", "probes-off"])
def test_every_operation_is_covered_by_a_granted_role(node_probes: bool) -> None:
    granted = granted_actions(node_probes)
    needed = [op for op in OPERATIONS if (node_probes or op.role != "node-probes") and not op.data_action]
    uncovered = [f"{op.name}: {op.action}" for op in needed if not any(covers(g, op.action) for g in granted)]
    assert not uncovered, f"no granted role covers: {uncovered}"


def test_leaving_probes_out_really_removes_run_command() -> None:
    probe_only = [op for op in OPERATIONS if op.role == "node-probes" and not op.action.lower().endswith("/read")]
    assert probe_only, "expected the run-command action to be attributed to node-probes"
    granted = granted_actions(node_probes=False)
    for op in probe_only:
        assert not any(covers(g, op.action) for g in granted), f"{op.action} granted although probes are off"


def test_each_operation_is_covered_by_the_role_it_names() -> None:
    custom, custom_data = custom_role_actions(), custom_role_data_actions()
    for op in OPERATIONS:
        if op.data_action:
            assert any(covers(a, op.action) for a in custom_data[op.role]), f"{op.name}: {op.role} lacks {op.action}"
            continue
        actions = BUILT_IN_ACTIONS[BUILT_IN_NAMES[op.role]] if op.role in BUILT_IN_NAMES else custom[op.role]
        assert any(covers(a, op.action) for a in actions), f"{op.name}: {op.role} does not cover {op.action}"


# Microsoft's least built-in Kubernetes data-plane role, as defined in "Azure built-in roles for Containers".
AKS_RBAC_READER_DATA_ACTIONS: tuple[str, ...] = tuple(
    f"Microsoft.ContainerService/managedClusters/{a}" for a in (
        "apps/controllerrevisions/read", "apps/daemonsets/read", "apps/deployments/read", "apps/replicasets/read",
        "apps/statefulsets/read", "autoscaling/horizontalpodautoscalers/read", "batch/cronjobs/read",
        "batch/jobs/read", "configmaps/read", "discovery.k8s.io/endpointslices/read", "endpoints/read",
        "events.k8s.io/events/read", "events/read", "extensions/daemonsets/read", "extensions/deployments/read",
        "extensions/ingresses/read", "extensions/networkpolicies/read", "extensions/replicasets/read",
        "limitranges/read", "metrics.k8s.io/pods/read", "metrics.k8s.io/nodes/read", "namespaces/read",
        "networking.k8s.io/ingresses/read", "networking.k8s.io/networkpolicies/read", "persistentvolumeclaims/read",
        "pods/read", "policy/poddisruptionbudgets/read", "replicationcontrollers/read", "resourcequotas/read",
        "serviceaccounts/read", "services/read"))
KUBE_OPERATIONS = [op for op in OPERATIONS if op.data_action]


def test_kubernetes_reads_are_granted_on_every_monitored_subscription_whatever_the_probe_setting() -> None:
    output = module("custom-roles.bicep")["outputs"]["roleDefinitionGuids"]["value"]["operator"]["operands"]
    for branch in ("true_value", "false_value"):
        assert "kubernetesReadsGuid" in output[branch], f"{branch}: Kubernetes reads not assigned"
    definitions = resources_of_type(module("custom-roles.bicep"), "Microsoft.Authorization/roleDefinitions")
    (reads,) = [r for r in definitions.values() if "kubernetes-reads" in json.dumps(resource_body(r)[0])]
    body, condition, _ = resource_body(reads)
    assert condition is None, "the Kubernetes reads role must not depend on a parameter"
    assert body["name"] == "kubernetesReadsGuid"


def test_the_kubernetes_role_is_read_only_and_needed_because_no_built_in_reader_suffices() -> None:
    granted = custom_role_data_actions()["kubernetes-reads"]
    assert KUBE_OPERATIONS, "operations.py lists no Kubernetes reads"
    for action in granted:
        assert action.endswith("/read"), action
        assert "*" not in action, action
        assert "secrets" not in action, action
    not_in_reader = sorted(op.action for op in KUBE_OPERATIONS
                           if not any(covers(a, op.action) for a in AKS_RBAC_READER_DATA_ACTIONS))
    assert not_in_reader == ["Microsoft.ContainerService/managedClusters/nodes/read",
                             "Microsoft.ContainerService/managedClusters/pods/log/read"]


def test_every_kubernetes_call_the_code_makes_is_a_listed_operation() -> None:
    """Scan shared/kube for CoreV1Api / AppsV1Api calls, so a new read cannot skip operations.py and the grants."""
    code = "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "shared" / "kube").rglob("*.py")))
    calls = {f"{'CoreV1Api' if api == 'core' else 'AppsV1Api'}.{name}"
             for api, name in re.findall(r"self\.(core|apps)\.([a-z_]+)", code)}
    assert {"CoreV1Api.read_namespaced_pod_log", "CoreV1Api.list_node"} <= calls, "discovery found too little"
    listed = {op.sdk_call for op in KUBE_OPERATIONS}
    assert calls <= listed, f"Kubernetes calls missing from operations.py: {sorted(calls - listed)}"


def _manifest() -> list[dict[str, Any]]:
    import yaml  # type: ignore[import-untyped]

    text = (REPO / "docs" / "kubernetes-rbac.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 1, "docs/kubernetes-rbac.md must hold exactly one yaml manifest"
    return [d for d in yaml.safe_load_all(blocks[0]) if d]


def _rbac_target(op_action: str, sdk_call: str) -> tuple[str, str, str]:
    """(apiGroup, resource, verb) a Kubernetes RBAC rule must allow for one operations.py data action."""
    path = op_action.removeprefix("Microsoft.ContainerService/managedClusters/").removesuffix("/read")
    group, resource = path.split("/", 1) if path.startswith("apps/") else ("", path)
    verb = "list" if ".list_" in sdk_call else "get"
    return group, resource, verb


def test_kubernetes_rbac_manifest_allows_exactly_the_listed_reads() -> None:
    docs = _manifest()
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("Role", "ClusterRole")}
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert {r["kind"] for r in roles.values()} == {"Role", "ClusterRole"}
    for binding in bindings:
        ref = binding["roleRef"]
        assert (ref["kind"], ref["name"]) in roles, f"{binding['metadata']['name']} binds a role the manifest lacks"
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                        "name": "<MONITOR_OBJECT_ID>"}]
        if binding["kind"] == "RoleBinding":
            assert binding["metadata"]["namespace"] == "kube-system"
    assert len(bindings) == len(roles), "every role is bound once"
    allowed: set[tuple[str, str, str, str]] = set()  # (scope, group, resource, verb)
    for (kind, _), role in roles.items():
        scope = "cluster" if kind == "ClusterRole" else role["metadata"]["namespace"]
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list"}, f"{rule} is not read-only"
            assert not {"secrets", "nodes/proxy", "pods/exec", "pods/portforward", "*"} & set(rule["resources"])
            allowed |= {(scope, g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    needed = set()
    for op in KUBE_OPERATIONS:
        group, resource, verb = _rbac_target(op.action, op.sdk_call)
        needed.add(("cluster" if resource == "nodes" else "kube-system", group, resource, verb))
    assert needed <= allowed, f"not allowed by the manifest: {sorted(needed - allowed)}"
    assert allowed <= needed, f"allowed beyond what the monitor reads: {sorted(allowed - needed)}"


def test_manifest_pins_named_reads_to_the_objects_the_code_reads() -> None:
    from shared.kube import collect as kube_collect

    (role,) = [d for d in _manifest() if d["kind"] == "Role"]
    pinned = {r["resources"][0]: r.get("resourceNames") for r in role["rules"] if r.get("resourceNames")}
    assert pinned == {"configmaps": [kube_collect.AUTOSCALER_CONFIGMAP],
                      "deployments": [kube_collect.AGENT_DEPLOYMENT]}
    assert role["metadata"]["namespace"] == kube_collect.NAMESPACE


def test_deploy_guide_names_every_custom_role_for_a_manually_added_subscription() -> None:
    """docs/deploy.md's CLI steps for adding a subscription must assign every custom role the Bicep defines."""
    guide = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    roles = variable(module("custom-roles.bicep"), "customRoles")
    for key, role in roles.items():
        name = str(role["roleName"]).replace("${environmentName}", "$ENV")
        assert f'"{name}"' in guide, f"docs/deploy.md does not assign custom role {unquote(key)} ({name})"


def test_host_storage_and_telemetry_roles() -> None:
    assert role_guids_assigned(module("host-rbac.bicep")) == {
        STORAGE_BLOB_DATA_OWNER, STORAGE_QUEUE_DATA_CONTRIBUTOR, STORAGE_TABLE_DATA_CONTRIBUTOR,
        MONITORING_METRICS_PUBLISHER,
    }


def test_role_assignment_names_are_deterministic() -> None:
    """guid(scope, principal, role): re-running `azd up` updates instead of failing with RoleAssignmentExists."""
    checked = 0
    for path in BICEP_FILES:
        for name, resource in resources_of_type(bicep(path), "Microsoft.Authorization/roleAssignments").items():
            body = resource_body(resource)[0]
            where = f"{path.name}:{name}"
            assert isinstance(body["name"], dict), f"{where}: name must be guid(...)"
            assert body["name"]["function"]["type"] == "guid", f"{where}: name must be guid(...)"
            assert "principalid" in json.dumps(body["name"]).lower(), f"{where}: name must include the principal"
            checked += 1
    assert checked >= 5


# ---------------------------------------------------------------- the stalled-cycles alert


def schedule_period(expression: str) -> timedelta:
    schedule = ncrontab.parse(expression)
    first = schedule.next_after(datetime(2026, 1, 5, tzinfo=UTC))
    return max(b - a for a, b in _pairs(first, schedule, 24))


def _pairs(first: datetime, schedule: ncrontab.Schedule, count: int) -> Iterator[tuple[datetime, datetime]]:
    current = first
    for _ in range(count):
        following = schedule.next_after(current)
        yield current, following
        current = following


def iso_minutes(duration: str) -> int:
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?", duration)
    assert match, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_alert_window_is_at_least_twice_the_slowest_check_schedule() -> None:
    slowest = max(schedule_period(DEFAULT_SCHEDULES[name]) for name in FAMILY_OF_SCHEDULE)
    window = main_bicep()["parameters"]["stalledWindow"]["default"]
    assert timedelta(minutes=iso_minutes(window)) >= 2 * slowest


def test_alert_query_matches_the_log_lines_the_code_writes() -> None:
    (rule,) = resources_of_type(module("alert.bicep"), "Microsoft.Insights/scheduledQueryRules").values()
    body = resource_body(rule)[0]["properties"]
    (criterion,) = body["criteria"]["allOf"]
    messages = re.findall(r'"([^"]+)"', criterion["query"])
    assert messages, "the alert query names no log message"
    code = "\n".join(p.read_text(encoding="utf-8") for p in code_files())
    for message in messages:
        assert re.search(r"log\w*\.info\(\s*" + re.escape(json.dumps(message)), code), \
            f"the alert waits for {message!r}, but no code logs it any more"
    assert criterion["operator"] == "LessThan"
    assert criterion["threshold"] == 1
    assert body["windowSize"] == "windowSize"
    assert body["autoMitigate"] is True


# ---------------------------------------------------------------- checkov


def checkov_command() -> list[str] | None:
    """`CHECKOV` env var, the repo's .venv-checkov (see Makefile), or checkov on PATH."""
    candidates = [os.environ.get("CHECKOV", ""), str(REPO / ".venv-checkov" / "bin" / "checkov"),
                  shutil.which("checkov") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return [candidate]
    return None


@pytest.mark.slow
def test_checkov_finds_nothing_beyond_the_baseline() -> None:
    command = checkov_command()
    if command is None:
        message = "checkov is not installed: create .venv-checkov (python -m venv .venv-checkov && " \
                  ".venv-checkov/bin/pip install checkov==3.3.30) or set CHECKOV=/path/to/checkov"
        if os.environ.get("REQUIRE_CHECKOV"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [*command, "--config-file", str(INFRA / ".checkov.yaml"), "--directory", str(INFRA), "--output", "json"],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
    )
    assert result.stdout.strip(), f"checkov printed nothing: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    bicep_reports = [r for r in reports if r.get("check_type") == "bicep"]
    assert bicep_reports, "checkov did not scan any Bicep"
    (scan,) = bicep_reports
    assert scan["summary"]["parsing_errors"] == 0, "checkov could not parse a file, so it did not check it"
    assert scan["summary"]["resource_count"] >= 30, "checkov saw fewer resources than infra/ declares"

    baseline = json.loads(CHECKOV_BASELINE.read_text())
    accepted = {(entry["check"], resource) for entry in baseline["accepted"] for resource in entry["resources"]}
    assert all(entry["reason"].strip() for entry in baseline["accepted"]), "every accepted check needs a reason"
    failed = {(check["check_id"], f"{check['file_path'].lstrip('/')}:{check['resource']}")
              for check in scan["results"]["failed_checks"]}
    new = sorted(failed - accepted)
    assert not new, f"checkov failures not in infra/checkov-baseline.json: {new}"
    stale = sorted(accepted - failed)
    assert not stale, f"baseline entries that no longer fail (remove them): {stale}"
