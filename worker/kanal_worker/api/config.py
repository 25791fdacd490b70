"""Declaring configuration beside the component that reads it.

A plugin's configuration is a pydantic model whose fields carry Kafka Connect's keys
as aliases (``azblob.account.name``) and the metadata Kafka Connect's ``ConfigDef``
publishes (importance, group, display name, ...). The same model validates a
configuration, documents it, and answers the REST API's validate endpoint.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, ValidationError
from pydantic import Field as PydanticField
from pydantic.fields import FieldInfo

from kanal_worker.api.errors import ConfigError

Importance = Literal["HIGH", "MEDIUM", "LOW"]
Width = Literal["NONE", "SHORT", "MEDIUM", "LONG"]


def setting(
    default: Any = ...,
    *,
    key: str,
    doc: str,
    importance: Importance = "MEDIUM",
    group: str | None = None,
    display: str | None = None,
    width: Width = "NONE",
    dependents: tuple[str, ...] = (),
    **constraints: Any,
) -> Any:
    """A configuration key: ``key`` is its Kafka Connect name, ``doc`` what it does."""
    return PydanticField(
        default,
        alias=key,
        description=doc,
        json_schema_extra={
            "importance": importance,
            "group": group,
            "display": display or key,
            "width": width,
            "dependents": list(dependents),
        },
        **constraints,
    )


class Settings(BaseModel):
    """Base of every configuration model; unknown keys are allowed (Kafka Connect
    passes the whole connector configuration to every component)."""

    model_config = ConfigDict(
        populate_by_name=True, extra="ignore", frozen=True, str_strip_whitespace=True,
        coerce_numbers_to_str=True,
    )

    @classmethod
    def parse(cls, config: Mapping[str, Any], prefix: str = "") -> Any:
        """Validate ``config`` (string values, as Kafka Connect passes them).

        Raises ``ConfigError`` naming the first bad key; ``config_errors`` lists them all.
        """
        data = _strip_prefix(config, prefix)
        try:
            return cls.model_validate(_blank_to_default(cls, data))
        except ValidationError as exc:
            key, message = _first_error(cls, exc, prefix)
            raise ConfigError(key, message) from None

    @classmethod
    def config_errors(cls, config: Mapping[str, Any], prefix: str = "") -> dict[str, list[str]]:
        data = _strip_prefix(config, prefix)
        try:
            cls.model_validate(_blank_to_default(cls, data))
        except ValidationError as exc:
            return _all_errors(cls, exc, prefix)
        return {}


def _strip_prefix(config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if not prefix:
        return dict(config)
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


def _blank_to_default(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Kafka Connect treats an empty value of a typed key as 'not set'."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        if data.get(key) == "" and _kind(info.annotation) not in ("STRING", "PASSWORD"):
            del data[key]
    return data


def _key_of(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    if not loc:
        return None
    name = str(loc[0])
    info = model.model_fields.get(name)
    return (info.alias or name) if info else name


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    if error["type"] == "missing":
        return "Missing required configuration with no default value; set it."
    return msg.removeprefix("Value error, ")


def _first_error(model: type[BaseModel], exc: ValidationError,
                 prefix: str) -> tuple[str | None, str]:
    error = exc.errors()[0]
    key = _key_of(model, error["loc"])
    return (prefix + key if key else None), _message(error)


def _all_errors(model: type[BaseModel], exc: ValidationError, prefix: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        key = _key_of(model, error["loc"]) or ""
        errors.setdefault(prefix + key, []).append(_message(error))
    return errors


@dataclass(frozen=True)
class KeyInfo:
    """One entry of Kafka Connect's ConfigInfos ``definition``."""

    name: str
    type: str
    required: bool
    default_value: str | None
    importance: str
    documentation: str
    group: str | None
    order: int
    width: str
    display_name: str
    dependents: list[str]
    recommended: list[str]


def describe(model: type[BaseModel], group: str | None = None, prefix: str = "") -> list[KeyInfo]:
    """Describe every key of ``model`` the way Kafka Connect's ConfigDef does."""
    infos = []
    for order, (name, info) in enumerate(model.model_fields.items(), start=1):
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        key = prefix + (info.alias or name)
        infos.append(KeyInfo(
            name=key,
            type=_kind(info.annotation),
            required=info.is_required(),
            default_value=None if info.is_required() else render_value(info.get_default()),
            importance=str(extra.get("importance", "MEDIUM")),
            documentation=info.description or "",
            group=str(extra.get("group")) if extra.get("group") else group,
            order=order,
            width=str(extra.get("width", "NONE")),
            display_name=str(extra.get("display") or key),
            dependents=[str(d) for d in extra.get("dependents", [])],  # type: ignore[union-attr]
            recommended=_choices(info),
        ))
    return infos


def render_value(value: Any) -> str | None:
    """A value as Kafka Connect prints it in configuration listings."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, SecretStr):
        return "[hidden]"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _choices(info: FieldInfo) -> list[str]:
    annotation = _unwrap_optional(info.annotation)
    if get_origin(annotation) is Literal:
        return [str(a) for a in get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(m.value) for m in annotation]
    if annotation is bool:
        return ["true", "false"]
    return []


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _kind(annotation: Any) -> str:
    annotation = _unwrap_optional(annotation)
    origin = get_origin(annotation)
    if annotation is SecretStr:
        return "PASSWORD"
    if annotation is bool:
        return "BOOLEAN"
    if annotation is int:
        return "LONG"
    if annotation is float:
        return "DOUBLE"
    if origin in (list, tuple) or annotation in (list, tuple):
        return "LIST"
    if origin is dict:
        return "STRING"
    return "STRING"


def secret_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Keys whose values must never be shown (PASSWORD type)."""
    return {prefix + (i.alias or n) for n, i in model.model_fields.items()
            if _kind(i.annotation) == "PASSWORD"}


def comma_list(value: Any) -> list[str]:
    """Kafka Connect's LIST type: comma separated, blanks dropped."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


CommaList = Annotated[list[str], BeforeValidator(comma_list)]
"""A Kafka Connect LIST value (``a,b,c``) parsed into a list of strings."""
