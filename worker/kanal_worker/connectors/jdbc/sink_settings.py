"""The JDBC sink's configuration, under Confluent's keys and with Confluent's defaults.

A Confluent ``JdbcSinkConnector`` configuration parses unchanged; checks that need
several keys are in ``sink_problems`` (the connector's validate and the task's start
both use it, so a mistake reads the same either way).
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from pydantic import BeforeValidator, field_validator

from kanal_worker.api import CommaList, setting
from kanal_worker.connectors.jdbc.database import JdbcConnectionSettings, dialect_problems

WRITES, DATA_MAPPING, DDL = "Writes", "Data Mapping", "DDL Support"
KAFKA_PK_FIELDS = ("__connect_topic", "__connect_partition", "__connect_offset")


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


InsertMode = Literal["insert", "upsert", "update"]
PkMode = Literal["none", "kafka", "record_key", "record_value"]


class JdbcSinkSettings(JdbcConnectionSettings):
    insert_mode: Annotated[InsertMode, BeforeValidator(_lower)] = setting(
        "insert", key="insert.mode", importance="HIGH", group=WRITES, display="Insert Mode",
        doc="insert: plain INSERT. upsert: insert or replace by primary key (PostgreSQL and "
            "SQLite ON CONFLICT DO UPDATE, MySQL ON DUPLICATE KEY UPDATE), so replays write "
            "the same rows. update: UPDATE by primary key (rows that do not exist stay absent).")
    batch_size: int = setting(
        3000, key="batch.size", importance="MEDIUM", group=WRITES, ge=1, display="Batch Size",
        doc="Rows sent to the database per statement batch. Every record a poll brings is "
            "written in one transaction however many batches that takes.")
    delete_enabled: bool = setting(
        False, key="delete.enabled", importance="MEDIUM", group=WRITES,
        display="Enable deletes",
        doc="Whether a tombstone (a record with a null value) deletes the row of its key; "
            "needs pk.mode=record_key. Tombstones are skipped when false.")
    table_name_format: str = setting(
        "${topic}", key="table.name.format", importance="MEDIUM", group=DATA_MAPPING,
        display="Table Name Format",
        doc="The table for a record: ${topic} is replaced by its topic, e.g. kafka_${topic}. "
            "schema.table names a schema (PostgreSQL, MySQL database).")
    pk_mode: Annotated[PkMode, BeforeValidator(_lower)] = setting(
        "none", key="pk.mode", importance="HIGH", group=DATA_MAPPING,
        display="Primary Key Mode",
        doc="Where the primary key comes from. none: no key. kafka: the record's topic, "
            "partition and offset (columns named by pk.fields, default __connect_topic, "
            "__connect_partition, __connect_offset). record_key: the record key (a struct's "
            "fields, all or those in pk.fields; a primitive key needs one name in pk.fields). "
            "record_value: fields of the value (all, or those in pk.fields).")
    pk_fields: CommaList = setting(
        [], key="pk.fields", importance="MEDIUM", group=DATA_MAPPING,
        display="Primary Key Fields",
        doc="The primary key's field names, as pk.mode explains.")
    fields_whitelist: CommaList = setting(
        [], key="fields.whitelist", importance="MEDIUM", group=DATA_MAPPING,
        display="Fields Whitelist",
        doc="Value fields written as columns; empty for all. Key columns are written "
            "whatever this says.")
    db_timezone: str = setting(
        "UTC", key="db.timezone", importance="MEDIUM", group=DATA_MAPPING,
        display="DB Time Zone",
        doc="The zone Timestamp values are written in to TIMESTAMP/DATETIME columns, which "
            "carry no zone, e.g. UTC or Europe/Berlin.")
    quote_sql_identifiers: Annotated[Literal["ALWAYS", "NEVER"], BeforeValidator(_upper)] = \
        setting("ALWAYS", key="quote.sql.identifiers", importance="MEDIUM", group=DATA_MAPPING,
                display="Quote Identifiers",
                doc="ALWAYS quotes table and column names, so they keep their case; NEVER "
                    "leaves them to the database's folding (PostgreSQL lowercases them).")
    auto_create: bool = setting(
        False, key="auto.create", importance="MEDIUM", group=DDL, display="Auto-Create",
        doc="Create a missing table (CREATE TABLE) from the record's schema and primary key; "
            "for schemaless JSON values, from the types of the values.")
    auto_evolve: bool = setting(
        False, key="auto.evolve", importance="MEDIUM", group=DDL, display="Auto-Evolve",
        doc="Add a nullable column (ALTER TABLE) for a field the table lacks. Kanal: for "
            "schemaless JSON values also widen a column whose values no longer fit (integer "
            "to double, anything to text), never narrowing one.")

    @field_validator("db_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"Unknown time zone {value!r}; use an IANA name such as UTC or "
                             f"Europe/Berlin.") from None
        return value


def sink_problems(settings: JdbcSinkSettings) -> dict[str, list[str]]:
    """Errors that need more than one key to see, by key."""
    problems = dict(dialect_problems(settings))
    if settings.delete_enabled and settings.pk_mode != "record_key":
        problems.setdefault("delete.enabled", []).append(
            f"Deletes need pk.mode=record_key (the tombstone's key names the row), not "
            f"pk.mode={settings.pk_mode}.")
    if settings.insert_mode in ("upsert", "update") and settings.pk_mode == "none":
        problems.setdefault("pk.mode", []).append(
            f"insert.mode={settings.insert_mode} needs a primary key; set pk.mode to kafka, "
            f"record_key or record_value.")
    if settings.pk_mode == "kafka" and settings.pk_fields and \
            len(settings.pk_fields) != len(KAFKA_PK_FIELDS):
        problems.setdefault("pk.fields", []).append(
            f"pk.mode=kafka needs three names (topic, partition, offset columns) or none for "
            f"{','.join(KAFKA_PK_FIELDS)}; got {','.join(settings.pk_fields)}.")
    if not settings.table_name_format:
        problems.setdefault("table.name.format", []).append(
            "The table name format is empty; use ${topic} or a table name.")
    return problems
