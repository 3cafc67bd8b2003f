"""Key encodings, property budgets and the AzureWebJobsStorage parsing (no emulator needed)."""

from __future__ import annotations

import json

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.store.connection import (
    SETTING,
    StorageNotConfiguredError,
    queue_service,
    settings_from_env,
    table_service,
)
from shared.store.findings import cluster_key, finding_id_for, finding_row_key
from shared.store.keys import (
    MAX_KEY,
    MAX_PART,
    PROPERTY_BUDGET,
    TRUNCATION_MARKER,
    check_key,
    fit_json_list,
    join_property,
    key_part,
    split_property,
    truncate_text,
    utf16_units,
)
from shared.store.tables import DEFAULT_TABLES, TableNames

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
AKS = f"/subscriptions/{SUB}/resourceGroups/my.rg_(1)/providers/Microsoft.ContainerService/managedClusters/Aks"


def test_arm_ids_become_readable_lower_case_keys() -> None:
    assert key_part(AKS) == (f"subscriptions:{SUB}:resourcegroups:my.rg_(1):providers:"
                             "microsoft.containerservice:managedclusters:aks")
    assert key_part(AKS) == key_part(AKS.upper())  # ARM ids are case-insensitive


@pytest.mark.parametrize("raw", ["a#b", "a?b", "a\\b", "tab\there", "nul\x00", "del\x7f", "c1\x85",
                                 "é-ü", "pipe|x", "tilde~7e", "colon:x", " spaced name "])
def test_forbidden_and_special_characters_are_escaped(raw: str) -> None:
    encoded = key_part(raw)
    check_key(encoded)  # would raise on / \ # ? or control characters
    assert "|" not in encoded
    assert encoded.isascii()


def test_escaping_is_injective_for_lookalikes() -> None:
    # `/` maps to `:` so a literal `:` and `~` must be escaped to keep these apart.
    samples = ["a/b", "a:b", "a~3ab", "a~b", "a|b", "a b", "a_b", "a.b"]
    assert len({key_part(s) for s in samples}) == len(samples)


def test_long_ids_are_cut_with_a_hash_and_stay_distinct() -> None:
    base = AKS + "/" + "x" * 2000
    a, b = key_part(base + "a"), key_part(base + "b")
    assert len(a) <= MAX_PART
    assert len(b) <= MAX_PART
    assert a != b
    assert "~h" in a
    assert a.startswith("subscriptions:")
    check_key(finding_row_key("nsg-blocks-10250", base))
    assert len(finding_row_key("nsg-blocks-10250", base)) <= MAX_KEY


def test_check_key_rejects_what_azure_rejects() -> None:
    for bad in ["a/b", "a#b", "a?b", "a\\b", "a\x01", "x" * (MAX_KEY + 1)]:
        with pytest.raises(ValueError):
            check_key(bad)


def test_finding_identity() -> None:
    assert finding_id_for(AKS, "nsg-blocks-10250", "Node-0") == finding_id_for(AKS.lower(), "nsg-blocks-10250",
                                                                               "node-0")
    assert finding_id_for(AKS, "nsg-blocks-10250", "node-0") != finding_id_for(AKS, "ufw-blocks-10250", "node-0")
    assert cluster_key(AKS) == key_part(AKS)
    assert finding_row_key("ufw-blocks-10250", "aks-nodepool1-123-vmss000001") == (
        "ufw-blocks-10250|aks-nodepool1-123-vmss000001")


def test_truncate_counts_utf16_units() -> None:
    text = "😀" * 20_000  # 40,000 UTF-16 units although only 20,000 code points
    cut = truncate_text(text, 1_000)
    assert utf16_units(cut) <= 1_000
    assert cut.endswith(TRUNCATION_MARKER)
    assert truncate_text("short", 1_000) == "short"


def test_fit_json_list_keeps_valid_json_and_marks_omissions() -> None:
    items = [{"resource": f"r{i}", "detail": "d" * 3_000} for i in range(100)]
    text = fit_json_list(items, PROPERTY_BUDGET, {"resource": TRUNCATION_MARKER, "detail": "{n} omitted"})
    assert utf16_units(text) <= PROPERTY_BUDGET
    decoded = json.loads(text)
    assert decoded[-1]["resource"] == TRUNCATION_MARKER
    kept = len(decoded) - 1
    assert decoded[-1]["detail"] == f"{100 - kept} omitted"
    assert decoded[:kept] == items[:kept]
    small = [{"resource": "a", "detail": "b"}]
    assert json.loads(fit_json_list(small)) == small


def test_split_property_round_trips_large_payloads() -> None:
    payload = "é😀x" * 40_000
    entity = split_property("payload", payload)
    assert entity["payload_parts"] > 1
    assert all(utf16_units(v) <= PROPERTY_BUDGET for k, v in entity.items() if k != "payload_parts")
    assert join_property(entity, "payload") == payload


def test_table_names() -> None:
    assert len(set(DEFAULT_TABLES.all())) == 8
    assert DEFAULT_TABLES.namespaced("T1").findings == "tunnelmonFindingsT1"
    with pytest.raises(ValueError, match="table name"):
        TableNames(findings="bad-name")


def test_connection_string_and_development_storage() -> None:
    assert settings_from_env({SETTING: "AccountName=a;AccountKey=k"}).connection_string == "AccountName=a;AccountKey=k"
    dev = settings_from_env({SETTING: "UseDevelopmentStorage=true"}).connection_string
    assert dev is not None
    assert "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in dev
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1" in dev
    proxied = settings_from_env({SETTING: "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://azurite"})
    assert "TableEndpoint=http://azurite:10002/devstoreaccount1" in (proxied.connection_string or "")
    service = table_service(settings_from_env({SETTING: "UseDevelopmentStorage=true"}))
    assert service.account_name == "devstoreaccount1"


def test_identity_based_settings() -> None:
    settings = settings_from_env({f"{SETTING}__accountName": "monitorsa"})
    assert settings.identity_based
    assert settings.table_uri == "https://monitorsa.table.core.windows.net"
    assert settings.queue_uri == "https://monitorsa.queue.core.windows.net"
    assert isinstance(table_service(settings).credential, DefaultAzureCredential)
    assert queue_service(settings).account_name == "monitorsa"

    with_client = settings_from_env({f"{SETTING}__tableServiceUri": "https://x.table.core.windows.net",
                                     f"{SETTING}__credential": "managedidentity",
                                     f"{SETTING}__clientId": "11111111-2222-3333-4444-555555555555"})
    assert with_client.client_id == "11111111-2222-3333-4444-555555555555"
    assert isinstance(table_service(with_client).credential, ManagedIdentityCredential)
    with pytest.raises(StorageNotConfiguredError, match="queueServiceUri"):
        queue_service(with_client)
    # The Functions host also accepts `:` separators and any casing.
    colon = settings_from_env({"azurewebjobsstorage:ACCOUNTNAME": "other"})
    assert colon.table_uri == "https://other.table.core.windows.net"


def test_missing_configuration_names_the_setting() -> None:
    with pytest.raises(StorageNotConfiguredError, match="AzureWebJobsStorage"):
        settings_from_env({"UNRELATED": "1", SETTING: "  "})
