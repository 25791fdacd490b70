"""Kafka Connect's REST API over a ``Herder``.

Paths, methods, query parameters, status codes and JSON bodies are Apache Kafka Connect
4.x's, so curl scripts, kcctl, Kafka UI, AKHQ and Terraform providers work unchanged.
Handlers stay thin: they translate HTTP to ``Herder`` calls, hide secret values and turn
the herder's errors into Apache's ``{"error_code", "message"}`` bodies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kanal_worker import __version__
from kanal_worker.api.errors import ConfigError, ConnectError
from kanal_worker.config.loader import stringify
from kanal_worker.rest import models
from kanal_worker.rest.auth import AccessGuard, Credentials, is_change
from kanal_worker.runtime import registry
from kanal_worker.runtime.herder import (
    BadRequestError,
    ConflictError,
    ConnectorOffset,
    Herder,
    NotFoundError,
)
from kanal_worker.runtime.status import TargetState
from kanal_worker.runtime.validation import HIDDEN, hidden_keys, mask

log = logging.getLogger(__name__)

CONNECT_API_VERSION = "4.3.1"
"""The Apache Kafka Connect release whose REST API this one answers like. ``GET /``
reports it before Kanal's version, since tools (kcctl) enable features by that number."""
COMMIT = os.environ.get("KANAL_COMMIT", "unknown")
HEALTH_STATUS = {"healthy": 200, "starting": 503, "unhealthy": 500}
ERROR_DESCRIPTIONS = {
    400: "Bad request: invalid JSON, invalid configuration (every error listed) or an "
         "operation the connector's state does not allow",
    401: "Missing or wrong HTTP basic auth credentials",
    403: "Read-only mode (kanal.rest.read.only=true)",
    404: "Unknown connector, task, plugin or logger",
    409: "The connector already exists, or the operation conflicts with one in progress",
    415: "The request's Content-Type is not application/json",
    500: "Unexpected failure, e.g. Kafka unreachable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers."""
    return {code: {"model": models.ErrorMessage, "description": ERROR_DESCRIPTIONS[code]}
            for code in codes}


def current_herder(request: Request) -> Herder:
    herder: Herder = request.app.state.herder
    return herder


HerderDep = Annotated[Herder, Depends(current_herder)]


async def require_json(request: Request) -> None:
    """Like Apache's resources, refuse a Content-Type other than application/json, and a
    body without a Content-Type where a JSON body is expected."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        expects_body = getattr(request.scope.get("route"), "body_field", None) is not None
        if expects_body and await request.body():
            raise HTTPException(415)
    elif content_type.partition(";")[0].strip().lower() != "application/json":
        raise HTTPException(415)


# -- helpers shared by the handlers ----------------------------------------------------

def strings(config: dict[str, models.ConfigValue]) -> dict[str, str]:
    return {key: stringify(value) for key, value in config.items()}


def named(name: str, config: dict[str, str]) -> dict[str, str]:
    """``config`` with ``name`` in it; a different name in it is an error, as in Apache."""
    included = config.get("name")
    if included is not None and included != name:
        raise BadRequestError(f"Connector name configuration ({included}) doesn't match "
                              f"connector name in the URL ({name})")
    return {**config, "name": name}


def keep_stored_secrets(herder: Herder, name: str, config: dict[str, str]) -> dict[str, str]:
    """Secret values read back as ``[hidden]`` keep the stored value, so a configuration
    fetched, edited and put back does not overwrite its passwords with ``[hidden]``."""
    placeholders = {key for key in hidden_keys(config) if config.get(key) == HIDDEN}
    if not placeholders:
        return config
    try:
        stored = herder.connector_config(name)
    except NotFoundError:
        return config
    return {**config, **{key: stored[key] for key in placeholders if key in stored}}


def masked_info(herder: Herder, name: str) -> dict[str, Any]:
    info = herder.connector_info(name)
    return {**info, "config": mask(info["config"])}


def created_info(herder: Herder, name: str) -> dict[str, Any]:
    """The answer to a creation: as Apache's, without tasks (they are planned after)."""
    return {**masked_info(herder, name), "tasks": []}


def location(request: Request, name: str) -> str:
    """The connector's URL, percent-encoded as Apache writes it (headers are ASCII)."""
    return f"{request.base_url}connectors/{quote(name, safe='')}"


EXPANSIONS: dict[str, Callable[[Herder, str], dict[str, Any]]] = {
    "status": lambda herder, name: herder.connector_status(name),
    "info": masked_info,
}


# -- GET / and /health -----------------------------------------------------------------

root = APIRouter(tags=["worker"])


@root.get("/", response_model=models.ServerInfo)
def server_info(herder: HerderDep) -> dict[str, Any]:
    """Versions of this worker and the id of its Kafka cluster."""
    return {"version": f"{CONNECT_API_VERSION}-kanal-{__version__}", "commit": COMMIT,
            "kafka_cluster_id": herder.kafka_cluster_id()}


@root.get("/health", response_model=models.WorkerStatus, responses={
    500: {"model": models.WorkerStatus, "description": "The worker is unhealthy"},
    503: {"model": models.WorkerStatus, "description": "The worker is starting"}})
def health(herder: HerderDep) -> JSONResponse:
    """Readiness and liveness of this worker."""
    state = herder.health()
    return JSONResponse({"status": state.status, "message": state.message},
                        status_code=HEALTH_STATUS[state.status])


# -- /connectors -----------------------------------------------------------------------

connectors = APIRouter(prefix="/connectors", tags=["connectors"],
                       dependencies=[Depends(require_json)], responses=errors(415))
ConnectorPath = Annotated[str, Path(description="The connector's name")]


@connectors.get("", response_model=list[str] | dict[str, models.ConnectorExpansions],
                response_model_exclude_none=True)
def list_connectors(
    herder: HerderDep,
    expand: Annotated[list[str], Query(
        default_factory=list,
        description="status and/or info: answer a map of connector to those details")],
) -> list[str] | dict[str, dict[str, Any]]:
    """Connector names, or with ``expand`` each connector's status and/or info."""
    names = herder.connectors()
    if not expand:
        return names
    expanded = {}
    for name in names:
        try:
            expanded[name] = {kind: EXPANSIONS[kind](herder, name)
                              for kind in expand if kind in EXPANSIONS}
        except NotFoundError:
            continue  # deleted while we looked, as Apache skips it
    return expanded


@connectors.post("", status_code=201, response_model=models.ConnectorInfo,
                 responses=errors(400, 409))
def create_connector(body: models.CreateConnectorRequest, request: Request, response: Response,
                     herder: HerderDep) -> dict[str, Any]:
    """Create a connector; 409 when one of that name exists."""
    if body.config is None:
        raise BadRequestError('The request has no "config"; send {"name": ..., "config": '
                              '{...}}')
    name = (body.name or "").strip()
    herder.put_connector(name, named(name, strings(body.config)), create_only=True,
                         initial_state=body.initial_state or "RUNNING")
    response.headers["Location"] = location(request, name)
    return created_info(herder, name)


@connectors.get("/{connector}", response_model=models.ConnectorInfo, responses=errors(404))
def get_connector(connector: ConnectorPath, herder: HerderDep) -> dict[str, Any]:
    """The connector's configuration, task ids and type."""
    return masked_info(herder, connector)


@connectors.delete("/{connector}", status_code=204, responses=errors(404))
def delete_connector(connector: ConnectorPath, herder: HerderDep) -> None:
    """Stop the connector's tasks and forget it (its offsets are kept)."""
    herder.delete_connector(connector)


@connectors.get("/{connector}/config", response_model=dict[str, str], responses=errors(404))
def get_connector_config(connector: ConnectorPath, herder: HerderDep) -> dict[str, str]:
    return mask(herder.connector_config(connector))


@connectors.put("/{connector}/config", response_model=models.ConnectorInfo, responses={
    201: {"model": models.ConnectorInfo, "description": "Created"}, **errors(400)})
def put_connector_config(connector: ConnectorPath, body: dict[str, models.ConfigValue],
                         request: Request, response: Response,
                         herder: HerderDep) -> dict[str, Any]:
    """Create (201) or reconfigure (200) the connector."""
    config = keep_stored_secrets(herder, connector, named(connector, strings(body)))
    if herder.put_connector(connector, config):
        response.status_code = 201
        response.headers["Location"] = location(request, connector)
        return created_info(herder, connector)
    return masked_info(herder, connector)


@connectors.patch("/{connector}/config", response_model=models.ConnectorInfo,
                  responses=errors(400, 404))
def patch_connector_config(connector: ConnectorPath, body: dict[str, models.ConfigValue],
                           herder: HerderDep) -> dict[str, Any]:
    """Change some keys; a null value removes the key."""
    stored = herder.connector_config(connector)
    patch = {key: None if value is None else stringify(value) for key, value in body.items()}
    secrets = hidden_keys({**stored, **{k: v for k, v in patch.items() if v is not None}})
    herder.patch_connector(connector, {key: value for key, value in patch.items()
                                       if not (key in secrets and value == HIDDEN)})
    return masked_info(herder, connector)


@connectors.get("/{connector}/status", response_model=models.ConnectorStateInfo,
                response_model_exclude_none=True, responses=errors(404))
def get_connector_status(connector: ConnectorPath, herder: HerderDep) -> dict[str, Any]:
    return herder.connector_status(connector)


@connectors.get("/{connector}/tasks", response_model=list[models.TaskInfo],
                responses=errors(404))
def get_tasks(connector: ConnectorPath, herder: HerderDep) -> list[dict[str, Any]]:
    """Each task's id and configuration (with ``task.class``, as Apache's)."""
    configs = herder.task_configs(connector)
    if not configs:  # no tasks planned (stopped, or a class that cannot plan)
        return []
    connector_class = herder.connector_config(connector).get("connector.class", "")
    task_class = registry.find("connector", connector_class, "connector.class").task_class_name
    return [{"id": {"connector": connector, "task": index},
             "config": {**mask(config), "task.class": task_class}}
            for index, config in enumerate(configs)]


@connectors.get("/{connector}/tasks/{task}/status", response_model=models.TaskState,
                response_model_exclude_none=True, responses=errors(404))
def get_task_status(connector: ConnectorPath, task: int, herder: HerderDep) -> dict[str, Any]:
    return herder.task_status(connector, task)


@connectors.post("/{connector}/tasks/{task}/restart", status_code=204, responses=errors(404))
def restart_task(connector: ConnectorPath, task: int, herder: HerderDep) -> None:
    herder.restart_task(connector, task)


@connectors.post("/{connector}/restart", status_code=202,
                 response_model=models.ConnectorStateInfo, response_model_exclude_none=True,
                 responses={204: {"description": "The connector alone was restarted "
                                                 "(neither includeTasks nor onlyFailed)"},
                            **errors(400, 404)})
def restart_connector(
    connector: ConnectorPath, herder: HerderDep,
    include_tasks: Annotated[bool, Query(alias="includeTasks",
                                         description="Restart the tasks too")] = False,
    only_failed: Annotated[bool, Query(alias="onlyFailed",
                                       description="Restart only what FAILED")] = False,
) -> Any:
    """Restart the connector (204), or with includeTasks/onlyFailed also its tasks (202
    with the status)."""
    herder.restart(connector, include_tasks, only_failed)
    if not include_tasks and not only_failed:
        return Response(status_code=204)
    return herder.connector_status(connector)


@connectors.put("/{connector}/pause", status_code=202, response_class=Response,
                responses=errors(404))
def pause_connector(connector: ConnectorPath, herder: HerderDep) -> Response:
    """Pause the connector's tasks (idempotent)."""
    herder.set_target_state(connector, TargetState.PAUSED)
    return Response(status_code=202)


@connectors.put("/{connector}/resume", status_code=202, response_class=Response,
                responses=errors(404))
def resume_connector(connector: ConnectorPath, herder: HerderDep) -> Response:
    """Resume the connector's tasks (idempotent)."""
    herder.set_target_state(connector, TargetState.STARTED)
    return Response(status_code=202)


@connectors.put("/{connector}/stop", status_code=204, responses=errors(404))
def stop_connector(connector: ConnectorPath, herder: HerderDep) -> None:
    """Stop the connector and shut its tasks down (idempotent); offsets may change then."""
    herder.set_target_state(connector, TargetState.STOPPED)


@connectors.get("/{connector}/topics", response_model=dict[str, models.ActiveTopicsInfo],
                responses=errors(404))
def get_active_topics(connector: ConnectorPath,
                      herder: HerderDep) -> dict[str, dict[str, list[str]]]:
    """Topics the connector consumed from or produced to since the last reset."""
    return {connector: {"topics": herder.active_topics(connector)}}


@connectors.put("/{connector}/topics/reset", status_code=202, response_class=Response,
                responses=errors(404))
def reset_active_topics(connector: ConnectorPath, herder: HerderDep) -> Response:
    herder.reset_active_topics(connector)
    return Response(status_code=202)


@connectors.get("/{connector}/offsets", response_model=models.ConnectorOffsets,
                responses=errors(404))
def get_offsets(connector: ConnectorPath, herder: HerderDep) -> dict[str, Any]:
    """Source partitions and offsets; for sinks the consumer group's committed offsets."""
    return {"offsets": [{"partition": entry.partition, "offset": entry.offset}
                        for entry in herder.connector_offsets(connector)]}


@connectors.patch("/{connector}/offsets", response_model=models.Message,
                  responses=errors(400, 404, 409))
def alter_offsets(connector: ConnectorPath, body: models.ConnectorOffsets,
                  herder: HerderDep) -> dict[str, str]:
    """Write offsets of a STOPPED connector (a null offset removes the partition's)."""
    if not body.offsets:
        raise BadRequestError("Partitions / offsets need to be provided for an alter offsets "
                              "request")
    offsets = [ConnectorOffset(entry.partition or {}, entry.offset) for entry in body.offsets]
    return {"message": herder.alter_offsets(connector, offsets)}


@connectors.delete("/{connector}/offsets", response_model=models.Message,
                   responses=errors(400, 404, 409))
def reset_offsets(connector: ConnectorPath, herder: HerderDep) -> dict[str, str]:
    """Forget every offset of a STOPPED connector: it starts over."""
    return {"message": herder.reset_offsets(connector)}


# -- /connector-plugins ----------------------------------------------------------------

plugins = APIRouter(prefix="/connector-plugins", tags=["connector-plugins"],
                    dependencies=[Depends(require_json)], responses=errors(415))


@plugins.get("", response_model=list[models.PluginInfo])
def list_plugins(
    herder: HerderDep,
    connectors_only: Annotated[bool, Query(
        alias="connectorsOnly", description="false lists transforms, predicates and "
                                            "converters too")] = True,
) -> list[dict[str, str]]:
    return [{"class": plugin.class_name, "type": plugin.type, "version": plugin.version}
            for plugin in herder.connector_plugins(connectors_only)]


@plugins.get("/{plugin}/config", response_model=list[models.ConfigKeyInfo],
             responses=errors(404))
def get_plugin_config(plugin: str, herder: HerderDep) -> list[dict[str, Any]]:
    """Every configuration key the plugin accepts."""
    return [asdict(key) for key in herder.plugin_config(plugin)]


@plugins.put("/{plugin}/config/validate", response_model=models.ConfigInfos,
             responses=errors(400))
def validate_config(plugin: str, body: dict[str, models.ConfigValue],
                    herder: HerderDep) -> dict[str, Any]:
    """Every key with its definition, value and errors (secret values [hidden])."""
    return herder.validate_config(plugin, strings(body))


# -- /admin/loggers --------------------------------------------------------------------

loggers = APIRouter(prefix="/admin/loggers", tags=["loggers"],
                    dependencies=[Depends(require_json)], responses=errors(415))


@loggers.get("", response_model=dict[str, models.LoggerLevel])
def list_loggers(herder: HerderDep) -> dict[str, dict[str, Any]]:
    """Loggers whose level is set explicitly, and the root logger."""
    return {name: asdict(level) for name, level in herder.logger_levels().items()}


@loggers.get("/{logger}", response_model=models.LoggerLevel, responses=errors(404))
def get_logger(logger: str, herder: HerderDep) -> dict[str, Any]:
    return asdict(herder.logger_level(logger))


@loggers.put("/{logger}", response_model=list[str], responses={
    204: {"description": "Set on every worker (scope=cluster)"}, **errors(400, 404)})
def set_logger_level(
    logger: str, body: models.LoggerLevelRequest, herder: HerderDep,
    scope: Annotated[str, Query(description="worker (default) or cluster")] = "worker",
) -> Any:
    """Set the level of the logger and its children; answers the loggers changed."""
    if body.level is None:
        raise BadRequestError("Desired 'level' parameter was not specified in request.")
    if scope.lower() == "cluster":
        herder.set_cluster_logger_level(logger, body.level)
        return Response(status_code=204)
    return herder.set_worker_logger_level(logger, body.level)


# -- errors ----------------------------------------------------------------------------

ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, 404), (ConflictError, 409), (BadRequestError, 400), (ConfigError, 400),
    (ConnectError, 500),
]


def error_response(status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error_code": status, "message": message}, status_code=status,
                        headers=headers)


async def on_connect_error(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
    if status == 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    message = exc.message if isinstance(exc, ConfigError) else str(exc)
    return error_response(status, message)


async def on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    if any(problem["loc"][:1] == ("path",) for problem in problems):
        return error_response(404, "HTTP 404 Not Found")  # as Jersey answers a bad path
    messages: dict[str, str] = {}
    for problem in problems:
        where = ".".join(str(part) for part in problem["loc"][1:]) or problem["loc"][0]
        text = (f"Request body is not valid JSON: {problem['ctx']['error']}"
                if problem["type"] == "json_invalid"
                else f"{where}: {problem['msg'].removeprefix('Value error, ')}")
        messages.setdefault(str(where), text)
    return error_response(400, "; ".join(messages.values()))


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    message = f"HTTP {exc.status_code} {phrase}" if exc.detail == phrase else exc.detail
    return error_response(exc.status_code, message, exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, f"{type(exc).__name__}: {exc}")


# -- the application -------------------------------------------------------------------

def create_app(herder: Herder, credentials: Credentials | None = None,
               read_only: bool = False) -> FastAPI:
    """The REST API over ``herder``; ``credentials`` turn on basic auth."""
    app = FastAPI(
        title="Kanal REST API",
        version=__version__,
        description="Kafka Connect's REST API (Apache Kafka Connect 4.x paths, status codes "
                    "and bodies), served by every Kanal worker.",
        redoc_url=None,
    )
    app.state.herder = herder
    for router in (root, connectors, plugins, loggers):
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(HTTPException, on_http_error)
    for kind, _ in ERROR_STATUS:
        app.add_exception_handler(kind, on_connect_error)
    app.add_exception_handler(Exception, on_unexpected)
    if credentials is not None or read_only:
        app.add_middleware(AccessGuard, credentials=credentials, read_only=read_only)
    _document_answers(app, credentials is not None, read_only)
    return app


def _document_answers(app: FastAPI, authenticated: bool, read_only: bool) -> None:
    """Make the OpenAPI document say what the server really answers: 400 (not FastAPI's
    422) for invalid requests, 500 anywhere, 401 with auth, 403 for changes when read-only."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    responses = operation["responses"]
                    codes = [500]
                    if responses.pop("422", None) is not None:
                        codes.append(400)
                    if authenticated and path != "/health":
                        codes.append(401)
                    if read_only and is_change(method.upper(), path):
                        codes.append(403)
                    for code in codes:
                        responses.setdefault(str(code), {
                            "description": ERROR_DESCRIPTIONS[code],
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/ErrorMessage"}}}})
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema
    app.openapi = openapi  # type: ignore[method-assign]
