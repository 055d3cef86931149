"""Azure OpenAI's URL shape over the OpenAI fake: real HTTP on 127.0.0.1.

Azure serves a deployment at `POST /openai/deployments/{deployment}/chat/completions?api-version=…`
and lists base models at `GET /openai/models?api-version=…`, with the key in an `api-key` header,
or a Microsoft Entra ID token as `Authorization: Bearer` (one of `entra_tokens`; another is a 401).
With `local_auth = False` (Azure's `disableLocalAuth`) a key is refused with 403
`AuthenticationTypeDisabled`. Without `api-version` Azure answers 404, without a key or token 401,
for an unknown deployment 404 `DeploymentNotFound`; a deployment of a reasoning model (`reasoning`,
e.g. o3) refuses `max_tokens` with Azure's 400 `unsupported_parameter`, as the real service does;
everything else (bodies, usage, streams, faults) is `OpenAIFake`'s.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from tests.support.fakes import FakeServer, OpenAIFake, Recorded, Reply

_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")


class AzureOpenAIFake(OpenAIFake):
    url_path = ""  # the SDK wants the resource endpoint; it adds /openai itself

    def __init__(self) -> None:
        super().__init__()
        self.deployments = ["my-gpt", "my-o3"]
        self.reasoning = {"my-o3"}  # deployments of o-series models: `max_completion_tokens` only
        self.entra_tokens: set[str] = set()  # bearer tokens the resource accepts
        self.local_auth = True  # False: keys are refused, only Entra ID tokens pass

    def route(self, req: Recorded) -> Reply:
        if "api-version" not in req.query:
            return Reply(404, _azure_error("404", "Resource not found"))
        refused = self._refused(req)
        if refused is not None:
            return refused
        if req.method == "GET" and req.path == "/openai/models":
            return super().route(replace(req, path="/v1/models"))
        match = _DEPLOYMENT.match(req.path)
        if match is None:
            return Reply(404, _azure_error("404", "Resource not found"))
        if match.group(1) not in self.deployments:
            return Reply(404, _azure_error("DeploymentNotFound", "The API deployment for this resource does not "
                                                                 "exist."))
        if match.group(1) in self.reasoning and "max_tokens" in (req.body or {}):
            return Reply(400, {"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                           "'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
        return super().route(replace(req, path="/v1/chat/completions"))


    def _refused(self, req: Recorded) -> Reply | None:
        authorization = req.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            if authorization.removeprefix("Bearer ") not in self.entra_tokens:
                return Reply(401, _azure_error("401", "Unauthorized. Access token is missing, invalid, audience is "
                                                      "incorrect (https://cognitiveservices.azure.com), or have "
                                                      "expired."))
            return None
        if not req.headers.get("api-key"):
            return Reply(401, _azure_error("401", "Access denied due to invalid subscription key or wrong API "
                                                  "endpoint."))
        if not self.local_auth:
            return Reply(403, _azure_error("AuthenticationTypeDisabled", "Key based authentication is disabled for "
                                                                         "this resource."))
        return None


class AzureIdentityFake(FakeServer):
    """Azure App Service's managed-identity token endpoint, where azure-identity's
    `DefaultAzureCredential` gets a token when `$IDENTITY_ENDPOINT` and `$IDENTITY_HEADER` are set:
    `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...` with an `X-IDENTITY-HEADER`
    header, answered `{access_token, expires_on, resource, token_type}`; a wrong header is a 401."""

    def __init__(self) -> None:
        super().__init__()
        self.header = "identity-header-secret"
        self.token = "entra-FAKE-token-never-shown-0123456789"
        self.lifetime = 3600  # seconds the token is valid

    @property
    def endpoint(self) -> str:
        return f"{self.url}/msi/token"

    def route(self, req: Recorded) -> Reply:
        if req.method != "GET" or req.path != "/msi/token" or req.query.get("api-version") != "2019-08-01":
            return self.not_found(req)
        if req.headers.get("x-identity-header") != self.header:
            return Reply(401, self.error_body(401, "The X-IDENTITY-HEADER is missing or wrong."))
        resource = req.query.get("resource", "")
        return Reply(body={"access_token": self.token, "expires_on": str(int(time.time()) + self.lifetime),
                           "resource": resource, "token_type": "Bearer"})

    def error_body(self, status: int, message: str) -> Any:
        return {"statusCode": status, "message": message}


def _azure_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
