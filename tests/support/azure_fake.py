"""Azure OpenAI's URL shape over the OpenAI fake: real HTTP on 127.0.0.1.

Azure serves a deployment at `POST /openai/deployments/{deployment}/chat/completions?api-version=…`
and lists base models at `GET /openai/models?api-version=…`, with the key in an `api-key` header.
Without `api-version` Azure answers 404, without a key 401, for an unknown deployment 404
`DeploymentNotFound`; a deployment of a reasoning model (`reasoning`, e.g. o3) refuses `max_tokens`
with Azure's 400 `unsupported_parameter`, as the real service does; everything else (bodies, usage,
streams, faults) is `OpenAIFake`'s.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from tests.support.fakes import OpenAIFake, Recorded, Reply

_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")


class AzureOpenAIFake(OpenAIFake):
    url_path = ""  # the SDK wants the resource endpoint; it adds /openai itself

    def __init__(self) -> None:
        super().__init__()
        self.deployments = ["my-gpt", "my-o3"]
        self.reasoning = {"my-o3"}  # deployments of o-series models: `max_completion_tokens` only

    def route(self, req: Recorded) -> Reply:
        if "api-version" not in req.query:
            return Reply(404, _azure_error("404", "Resource not found"))
        if not req.headers.get("api-key"):
            return Reply(401, _azure_error("401", "Access denied due to invalid subscription key or wrong API "
                                                  "endpoint."))
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


def _azure_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
