"""HTTP triggers (auth level FUNCTION): thin adapters from func.HttpRequest to shared.functions.api."""

from __future__ import annotations

import azure.functions as func

from shared.functions.api import Api, ApiResponse
from shared.functions.context import get_monitor

bp = func.Blueprint()  # type: ignore[no-untyped-call]
api = Api(get_monitor)


def _respond(result: ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(result.json_bytes(), status_code=result.status, headers=result.headers,
                             mimetype="application/json")


def _body(req: func.HttpRequest) -> dict[str, object] | None:
    raw = req.get_body()
    if not raw:
        return None
    try:
        data = req.get_json()
    except ValueError:
        return {"__invalid__": True}
    return data if isinstance(data, dict) else {"__invalid__": True}


@bp.route(route="diagnose", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
def diagnose_http(req: func.HttpRequest) -> func.HttpResponse:
    body = _body(req)
    if body is not None and body.get("__invalid__"):
        return _respond(ApiResponse(400, {"error": {"field": "body", "message": "request body must be a JSON object"}}))
    return _respond(api.diagnose(dict(req.params), body))


@bp.route(route="diagnoses/{requestId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def diagnosis_status_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.diagnosis_status(req.route_params.get("requestId", "")))


@bp.route(route="findings", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def findings_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.findings(dict(req.params)))


@bp.route(route="findings/{findingId}/history", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def finding_history_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.history(req.route_params.get("findingId", "")))


@bp.route(route="clusters", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def clusters_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.clusters(dict(req.params)))


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(api.health())
