"""The App Service / Functions managed-identity token endpoint, and ARM's check of the bearer token.

azure-identity (through MSAL) calls `GET IDENTITY_ENDPOINT?api-version=2019-08-01&resource=<aud>` with the
`X-IDENTITY-HEADER` secret and expects `{"access_token", "expires_on", "resource", "token_type"}`. Tokens
are opaque random strings bound to their resource, so ARM can refuse a token minted for another audience
(401 InvalidAuthenticationTokenAudience), as Azure does.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_LIFETIME = 24 * 3600


@dataclass(frozen=True)
class TokenCheck:
    ok: bool
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class IdentityAnswer:
    status: int
    body: dict[str, Any]


class TokenIssuer:
    def __init__(self, audience: str) -> None:
        self.header_secret = secrets.token_urlsafe(24)
        self._audience = audience.rstrip("/").lower()
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self.issued = 0

    def answer(self, params: Mapping[str, str], headers: Mapping[str, str]) -> IdentityAnswer:
        """Mirror App Service's endpoint, including its refusals (missing header, api-version, resource)."""
        if headers.get("x-identity-header") != self.header_secret:
            return IdentityAnswer(401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing "
                                                                      "or does not match."})
        if params.get("api-version") != "2019-08-01":
            return IdentityAnswer(400, {"statusCode": 400, "message": "Unsupported or missing api-version; "
                                                                      "expected 2019-08-01."})
        resource = params.get("resource")
        if not resource:
            return IdentityAnswer(400, {"statusCode": 400, "message": "resource is required."})
        token = secrets.token_urlsafe(32)
        expires = int(time.time()) + TOKEN_LIFETIME
        with self._lock:
            self._tokens[token] = (resource.rstrip("/").lower(), expires)
            self.issued += 1
        body = {"access_token": token, "expires_on": str(expires), "resource": resource, "token_type": "Bearer",
                "client_id": "00000000-0000-0000-0000-000000000001"}
        return IdentityAnswer(200, body)

    def resource_of(self, token: str) -> str | None:
        """The resource a live token was minted for (None: unknown or expired); for the Kubernetes API."""
        with self._lock:
            entry = self._tokens.get(token.strip())
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def check(self, authorization: str | None) -> TokenCheck:
        if not authorization:
            return TokenCheck(False, "AuthenticationFailed",
                              "Authentication failed. The 'Authorization' header is missing.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return TokenCheck(False, "AuthenticationFailed",
                              "Authentication failed. The 'Authorization' header is provided in an invalid format.")
        with self._lock:
            entry = self._tokens.get(token.strip())
        if entry is None:
            return TokenCheck(False, "InvalidAuthenticationToken", "The access token is invalid.")
        resource, expires = entry
        if expires < time.time():
            return TokenCheck(False, "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier "
                                                                   "than current UTC time.")
        if resource != self._audience:
            return TokenCheck(False, "InvalidAuthenticationTokenAudience",
                              f"The access token has been obtained for wrong audience or resource '{resource}'. It "
                              f"should exactly match with one of the allowed audiences '{self._audience}'.")
        return TokenCheck(True)
