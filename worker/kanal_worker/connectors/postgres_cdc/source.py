"""PostgresConnector: PostgreSQL changes into Kafka, record for record as Debezium writes them.

The task reads the tables once at the replication slot's exported snapshot (op ``r``),
then streams the slot from the point that snapshot was taken at, so no change is missed
or read twice. Each record's offset is its transaction's commit LSN and its number in
the transaction; the slot is confirmed (``flush_lsn``) only up to the end of the last
transaction whose records Kafka acknowledged (``commit``), so after a crash PostgreSQL
sends again what Kafka may lack, and the task skips what it already has.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from kanal_worker.api import (
    ConfigError,
    Header,
    RetriableError,
    SourceConnector,
    SourceRecord,
    SourceTask,
    SourceTaskContext,
)
from kanal_worker.api.schema import STRING
from kanal_worker.connectors.postgres_cdc import database
from kanal_worker.connectors.postgres_cdc.events import (
    HEARTBEAT_KEY_SCHEMA,
    HEARTBEAT_VALUE_SCHEMA,
    CapturedTable,
    Position,
    selected,
    snapshot_marker,
)
from kanal_worker.connectors.postgres_cdc.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    decode,
    parse_lsn,
)
from kanal_worker.connectors.postgres_cdc.settings import PostgresCdcSettings

log = logging.getLogger(__name__)

SNAPSHOT_FETCH = 2000
"""Rows fetched per round trip while snapshotting."""

Progress = tuple[int, int]
"""``(commit LSN, change number in its transaction)``: the order of changes."""


class PostgresCdcTask(SourceTask[PostgresCdcSettings]):
    def __init__(self, settings: PostgresCdcSettings, context: SourceTaskContext) -> None:
        super().__init__(settings, context)
        self.partition = {"server": settings.topic_prefix}
        self.headers = [Header("__debezium.context.connectorLogicalName",
                               settings.topic_prefix, STRING),
                        Header("__debezium.context.taskId", "0", STRING),
                        Header("__debezium.context.connectorName", "postgresql", STRING),
                        Header("__debezium.context.runId", str(uuid.uuid4()), STRING)]
        self.catalog: psycopg2.extensions.connection | None = None
        self.replication: psycopg2.extensions.connection | None = None
        self.cursor: psycopg2.extras.ReplicationCursor | None = None
        self.snapshot_rows: Iterator[SourceRecord] | None = None
        self.snapshot_connection: psycopg2.extensions.connection | None = None
        self.relations: dict[int, CapturedTable | None] = {}
        self.emitted: Progress = (0, 0)
        """The last change handed to the runtime: never emitted again."""
        self.start_lsn = 0
        self.confirmed = 0
        self.ready: list[SourceRecord] = []
        self.transaction: list[SourceRecord] = []
        self.begin: Begin | None = None
        self.sequence = 0
        self.last_commit_lsn: int | None = None
        self.idle_lsn = 0
        """A position with every transaction before it handed over (heartbeats use it)."""
        self.next_heartbeat = 0.0
        self.streaming = True

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        settings = self.settings
        offset = self.context.offset(self.partition)
        with database.translated(settings):
            self.catalog = database.connect(settings)
            database.check(self.catalog, settings)
            database.ensure_publication(self.catalog, settings)
            slot_exists = database.slot_exists(self.catalog, settings.slot_name)
            resumable = offset is not None and not offset.get("snapshot")
            mode = settings.snapshot_mode
            snapshot = mode in ("initial", "initial_only", "when_needed", "always") and \
                (not resumable or mode == "always" or
                 (mode == "when_needed" and not slot_exists))
            self.streaming = mode != "initial_only"
            if resumable and offset is not None:
                self.emitted = (int(offset["lsn_commit"]), int(offset["seq"]))
                self.confirmed = int(offset.get("lsn_end", 0))
            if snapshot:
                if slot_exists:
                    database.drop_slot(self.catalog, settings.slot_name)
                self._start_snapshot()
            elif not slot_exists and self.streaming:
                if resumable:
                    log.warning("Slot %s is gone: changes since the stored position are "
                                "lost; snapshot.mode=when_needed would read the tables "
                                "again", settings.slot_name)
                self._create_slot(export=False)
        self.next_heartbeat = time.monotonic() + settings.heartbeat_interval_ms / 1000

    def _create_slot(self, export: bool) -> tuple[int, str | None]:
        """Create the slot; its consistent point and, with ``export``, the snapshot's name
        (valid until the replication connection runs its next command)."""
        self.replication = database.connect(self.settings, replication=True)
        cursor = self.replication.cursor()
        cursor.execute(sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}").format(
            sql.Identifier(self.settings.slot_name),
            sql.SQL("EXPORT_SNAPSHOT" if export else "NOEXPORT_SNAPSHOT")))
        created = cursor.fetchone()
        assert created is not None
        _, point, snapshot_name, _ = created
        cursor.close()
        return parse_lsn(point), snapshot_name

    def _start_snapshot(self) -> None:
        point, snapshot_name = self._create_slot(export=True)
        self.start_lsn = point
        connection = database.connect(self.settings)
        database.read_as_text(connection)
        connection.autocommit = False
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
        self.snapshot_connection = connection
        assert self.catalog is not None
        tables = [database.captured_table(self.catalog, self.settings, oid)
                  for _, _, oid in database.selected_tables(self.catalog, self.settings)]
        self.snapshot_rows = self._snapshot_records(connection, tables, point)

    def _snapshot_records(self, connection: psycopg2.extensions.connection,
                          tables: list[CapturedTable], point: int) -> Iterator[SourceRecord]:
        """Every row of ``tables`` as an ``r`` event, the ends marked as Debezium marks
        them; a row is yielded once the next is known."""
        txid = int(database.query(connection, "SELECT txid_current_if_assigned()")[0][0]
                   or 0) or None
        now = time.time_ns() // 1000
        rows = self._rows(connection, tables)
        ahead = next(rows, None)
        first = True
        while ahead is not None:
            table, texts, first_in_table = ahead
            ahead = next(rows, None)
            last = ahead is None
            last_in_table = ahead is None or ahead[0] is not table
            marker = snapshot_marker(first, last, first_in_table, last_in_table)
            first = False
            offset: dict[str, Any] = {"lsn_commit": point, "seq": 0, "snapshot": not last}
            if last:
                offset["lsn_end"] = point
            after = table.row(texts)
            position = Position(txid or 0, point, None, now, marker)
            yield from table.records("r", None, after, position, self.settings.dbname,
                                     self.partition, offset, self.headers)
        connection.rollback()

    def _rows(self, connection: psycopg2.extensions.connection, tables: list[CapturedTable]
              ) -> Iterator[tuple[CapturedTable, tuple[object, ...], bool]]:
        for table in tables:
            columns = sql.SQL(", ").join(sql.Identifier(name) for name in table.column_names)
            statement = sql.SQL("SELECT {} FROM {}").format(
                columns, sql.Identifier(table.schema, table.name))
            with connection.cursor(name=f"snapshot_{uuid.uuid4().hex}") as cursor:
                cursor.itersize = SNAPSHOT_FETCH
                cursor.execute(statement)
                first = True
                for row in cursor:
                    yield table, row, first
                    first = False

    # ------------------------------------------------------------------ poll

    def poll(self) -> list[SourceRecord]:
        with database.translated(self.settings):
            if self.snapshot_rows is not None:
                return self._poll_snapshot()
            if not self.streaming:
                time.sleep(self.settings.poll_interval_ms / 1000)
                return []
            try:
                return self._poll_stream()
            except psycopg2.Error as exc:
                # the stream is broken whatever the error (a restarting server ends the
                # COPY); reconnecting resumes at the slot's confirmed position
                self._disconnect()
                raise RetriableError(f"replication from {self.settings.hostname}:"
                                     f"{self.settings.port} broke off: "
                                     f"{str(exc).strip() or type(exc).__name__}; "
                                     "reconnecting") from None

    def _poll_snapshot(self) -> list[SourceRecord]:
        assert self.snapshot_rows is not None
        batch: list[SourceRecord] = []
        for record in self.snapshot_rows:
            batch.append(record)
            if len(batch) >= self.settings.max_batch_size:
                return batch
        self.snapshot_rows = None
        if self.snapshot_connection is not None:
            self.snapshot_connection.close()
            self.snapshot_connection = None
        self.emitted = (self.start_lsn, 0)
        self.idle_lsn = self.start_lsn
        if not self.streaming:
            # initial_only: nothing will read the slot, which would keep WAL for ever
            if self.replication is not None:
                self.replication.close()
            assert self.catalog is not None
            database.drop_slot(self.catalog, self.settings.slot_name)
        return batch

    def _poll_stream(self) -> list[SourceRecord]:
        if self.cursor is None:
            self._start_streaming()
        assert self.cursor is not None
        deadline = time.monotonic() + self.settings.poll_interval_ms / 1000
        while len(self.ready) < self.settings.max_batch_size:
            message = self.cursor.read_message()
            if message is None:
                if self.ready or time.monotonic() >= deadline:
                    break
                self._heartbeat()
                if self.ready:
                    break
                select.select([self.cursor], [], [], max(0.0, deadline - time.monotonic()))
                continue
            self._handle(decode(message.payload), message.data_start)
        self._heartbeat()
        batch, self.ready = self.ready, []
        if batch:
            last = batch[-1].source_offset
            if "lsn_commit" in last:
                self.emitted = max(self.emitted, (int(last["lsn_commit"]), int(last["seq"])))
        return batch

    def _start_streaming(self) -> None:
        if self.replication is None or self.replication.closed:
            self.replication = database.connect(self.settings, replication=True)
        assert self.catalog is not None
        if self.catalog.closed:
            self.catalog = database.connect(self.settings)
        cursor = cast(psycopg2.extras.ReplicationCursor, self.replication.cursor())
        cursor.start_replication(
            slot_name=self.settings.slot_name, decode=False, start_lsn=0,
            options={"proto_version": "1", "publication_names": self.settings.publication_name},
            status_interval=max(1, self.settings.status_update_interval_ms // 1000))
        self.cursor = cursor
        self.relations.clear()
        self.transaction, self.begin = [], None
        if self.confirmed:
            cursor.send_feedback(flush_lsn=self.confirmed)  # type: ignore[no-untyped-call]

    def _disconnect(self) -> None:
        """Forget the stream after a lost connection: the next poll reconnects, and the
        server sends again every transaction the slot has not confirmed."""
        for connection in (self.replication, self.catalog):
            if connection is not None and not connection.closed:
                with contextlib.suppress(psycopg2.Error):
                    connection.close()
        self.cursor = None
        self.transaction, self.begin = [], None

    def _handle(self, message: object, lsn: int) -> None:
        if isinstance(message, Begin):
            self.begin, self.sequence, self.transaction = message, 0, []
        elif isinstance(message, Commit):
            if self.transaction:
                self.transaction[-1].source_offset["lsn_end"] = message.end_lsn
                self.ready.extend(self.transaction)
            self.transaction, self.begin = [], None
            self.last_commit_lsn = message.commit_lsn
            self.idle_lsn = max(self.idle_lsn, message.end_lsn)
        elif isinstance(message, Relation):
            self.relations[message.relation_id] = self._table(message)
        elif isinstance(message, Insert | Update | Delete | Truncate):
            self._change(message, lsn)

    def _table(self, relation: Relation) -> CapturedTable | None:
        if not selected(self.settings, relation.namespace, relation.name):
            return None
        assert self.catalog is not None
        return database.captured_table(self.catalog, self.settings, relation.relation_id,
                                       [column.name for column in relation.columns])

    def _change(self, message: Insert | Update | Delete | Truncate, lsn: int) -> None:
        begin = self.begin
        if begin is None:
            raise RetriableError("a change arrived outside a transaction; reconnecting")
        self.sequence += 1
        if (begin.final_lsn, self.sequence) <= self.emitted:
            return
        skipped = self.settings.skipped_operations
        offset: dict[str, Any] = {"lsn_commit": begin.final_lsn, "seq": self.sequence,
                                  "txId": begin.xid}
        position = Position(begin.xid, lsn, self.last_commit_lsn, begin.commit_micros)
        if isinstance(message, Truncate):
            if "t" in skipped:
                return
            for relation_id in message.relation_ids:
                table = self.relations.get(relation_id)
                if table is not None:
                    self._add(table.truncate(position, self.settings.dbname, self.partition,
                                             offset, self.headers))
            return
        table = self.relations.get(message.relation_id)
        if table is None:
            return
        if isinstance(message, Insert):
            if "c" in skipped:
                return
            records = table.records("c", None, table.row(message.new), position,
                                    self.settings.dbname, self.partition, offset, self.headers)
        elif isinstance(message, Update):
            if "u" in skipped:
                return
            before = None
            if message.old is not None:
                before = table.key_only_row(message.old) if message.old_is_key \
                    else table.row(message.old)
            after = table.row(message.new, before)
            records = self._update(table, before, after, position, offset)
        else:
            if "d" in skipped:
                return
            before = table.key_only_row(message.old) if message.old_is_key \
                else table.row(message.old)
            records = table.records("d", before, None, position, self.settings.dbname,
                                    self.partition, offset, self.headers)
        self._add(records)

    def _update(self, table: CapturedTable, before: dict[str, Any] | None,
                after: dict[str, Any], position: Position, offset: dict[str, Any]
                ) -> list[SourceRecord]:
        """An update's events; one that changes the primary key is, as Debezium writes
        it, a delete of the old key (and its tombstone) and a create of the new one,
        each naming the other key in a header."""
        database, partition = self.settings.dbname, self.partition
        old_key = table.key(before) if before is not None else None
        new_key = table.key(after)
        if old_key is None or old_key == new_key:
            return table.records("u", before, after, position, database, partition, offset,
                                 self.headers)
        return [
            *table.records("d", before, None, position, database, partition, offset,
                           [*self.headers, Header("__debezium.newkey", new_key,
                                                  table.key_schema)]),
            *table.records("c", None, after, position, database, partition, offset,
                           [*self.headers, Header("__debezium.oldkey", old_key,
                                                  table.key_schema)])]

    def _add(self, records: list[SourceRecord]) -> None:
        self.transaction.extend(records)
        if len(self.transaction) >= self.settings.max_batch_size:
            # a large transaction goes out in parts; the slot is confirmed at its end
            self.ready.extend(self.transaction)
            self.transaction = []

    def _heartbeat(self) -> None:
        settings = self.settings
        if not settings.heartbeat_interval_ms or time.monotonic() < self.next_heartbeat:
            return
        self.next_heartbeat = time.monotonic() + settings.heartbeat_interval_ms / 1000
        if settings.heartbeat_action_query:
            assert self.catalog is not None
            database.query(self.catalog, settings.heartbeat_action_query)
        if self.begin is not None or self.ready or self.cursor is None:
            return
        position = max(self.idle_lsn, int(self.cursor.wal_end or 0))
        if position <= self.confirmed:
            return
        now_ms = int(time.time() * 1000)
        prefix = settings.topic_prefix
        self.ready.append(SourceRecord(
            topic=f"{settings.heartbeat_topics_prefix}.{prefix}",
            key={"serverName": prefix}, key_schema=HEARTBEAT_KEY_SCHEMA,
            value={"ts_ms": now_ms}, value_schema=HEARTBEAT_VALUE_SCHEMA, timestamp=now_ms,
            source_partition=self.partition,
            source_offset={"lsn_commit": position, "seq": 0, "lsn_end": position,
                           "heartbeat": True}))

    # ------------------------------------------------------------------ commit, stop

    def commit(self) -> None:
        """Kafka has every record up to the stored offset: confirm the slot up to the end
        of the last complete transaction among them."""
        offset = self.context.offset(self.partition)
        if offset is None or "lsn_end" not in offset or self.cursor is None:
            return
        end = int(offset["lsn_end"])
        if end <= self.confirmed:
            return
        try:
            self.cursor.send_feedback(flush_lsn=end, force=True)  # type: ignore[no-untyped-call]
        except psycopg2.Error as exc:
            log.warning("Could not confirm LSN %s to the slot (%s); it is confirmed on "
                        "reconnection", end, exc)
            return
        self.confirmed = end

    def stop(self) -> None:
        for connection in (self.snapshot_connection, self.replication):
            if connection is not None and not connection.closed:
                with contextlib.suppress(psycopg2.Error):
                    connection.close()
        if self.settings.slot_drop_on_stop:
            self._drop_slot()
        if self.catalog is not None and not self.catalog.closed:
            self.catalog.close()

    def _drop_slot(self) -> None:
        deadline = time.monotonic() + 10
        try:
            connection = database.connect(self.settings)
        except (ConfigError, RetriableError) as exc:
            log.warning("Slot %s not dropped: %s", self.settings.slot_name, exc)
            return
        try:
            while time.monotonic() < deadline:
                database.drop_slot(connection, self.settings.slot_name)
                if not database.slot_exists(connection, self.settings.slot_name):
                    return
                time.sleep(0.2)  # the walsender of the closed connection is still exiting
            log.warning("Slot %s is still in use; not dropped", self.settings.slot_name)
        finally:
            connection.close()


class PostgresConnector(SourceConnector[PostgresCdcSettings]):
    settings = PostgresCdcSettings
    task_class = PostgresCdcTask
    aliases = ("io.debezium.connector.postgresql.PostgresConnector",)

    def validate(self, settings: PostgresCdcSettings) -> dict[str, list[str]]:
        try:
            connection = database.connect(settings)
        except ConfigError as exc:
            return {exc.key or "database.hostname": [exc.message]}
        except RetriableError as exc:
            return {"database.hostname": [f"{exc}; check database.hostname and "
                                          "database.port"]}
        try:
            return database.problems(connection, settings)
        finally:
            connection.close()
