"""The fleet page's infrastructure option: Entra ID sign-in (App Service Authentication) in front of the
page and the API, off by default, wired from main.bicep and the azd parameters file."""

from __future__ import annotations

import json

from tests.test_infra import INFRA, main_bicep, module, resource_body, resources_of_type


def _auth_resource() -> tuple[dict, object]:
    parsed = module("functionapp.bicep")
    configs = resources_of_type(parsed, "Microsoft.Web/sites/config")
    auth = [resource_body(r) for r in configs.values() if resource_body(r)[0]["name"] == "authsettingsV2"]
    assert len(auth) == 1, "one authsettingsV2 resource"
    body, condition, _ = auth[0]
    return body, condition


def test_entra_sign_in_is_a_conditional_authsettings_v2_resource() -> None:
    body, condition = _auth_resource()
    assert condition is not None, "only deployed when asked for"
    assert "enableEntraSignIn" in json.dumps(condition)
    props = body["properties"]
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"]["requireAuthentication"] is True
    assert props["globalValidation"]["unauthenticatedClientAction"] == "RedirectToLoginPage"
    assert props["httpSettings"]["requireHttps"] is True
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert "entraClientId" in json.dumps(aad["validation"]["allowedAudiences"])


def test_entra_sign_in_is_off_by_default_and_passed_through() -> None:
    fa = module("functionapp.bicep")["parameters"]
    assert fa["enableEntraSignIn"]["default"] is False
    main = main_bicep()
    assert main["parameters"]["enableEntraSignIn"]["default"] is False
    call = json.dumps(main["modules"]["functionApp"])
    for name in ("enableEntraSignIn", "entraClientId", "entraClientSecretSettingName"):
        assert name in call, f"main.bicep passes {name} to the function app module"
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["enableEntraSignIn"]["value"] == "${ENABLE_ENTRA_SIGN_IN=false}"
