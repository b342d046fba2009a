"""PostgreSQL: the connection pool, the schema and the stores behind the API.

* ``Database``: a psycopg 3 ``ConnectionPool`` (min/max size and checkout timeout
  from the config; ``statement_timeout`` set for every connection through the
  startup ``options``), every query timed into ``db_query_duration_seconds`` and
  counted in ``db_queries_total``, the ``slow_query`` fault, the idempotent schema
  (``CREATE ... IF NOT EXISTS`` under an advisory lock, so several instances can
  start together) and the business counts of the periodic sync.
* ``MetricStore`` (jsonb documents, id ``data->>'metric_id'``), ``DomainStore``
  and ``ObjectiveStore`` (rows with serial ids): read-through cached, each
  operation in a ``<Store>.<operation>`` span of the ``mdl-storage`` tracer.
* ``UserStore``: the ``users`` table (PBKDF2-SHA256 hashes), seeded from the config.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

SCHEMA_LOCK_ID = 0x6D646C  # "mdl": pg_advisory_xact_lock key of the schema migration
# Login hashing cost: kept moderate so the load tests' >10 logins/s fit on a small
# host; stored in every hash, so raising it later re-hashes on the next seed.
PBKDF2_ITERATIONS = 20_000
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS metrics (id serial PRIMARY KEY, data jsonb NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS metrics_metric_id_key ON metrics ((data->>'metric_id'))",
    "CREATE TABLE IF NOT EXISTS domains (id serial PRIMARY KEY, name text NOT NULL UNIQUE,"
    " description text NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS objectives (id serial PRIMARY KEY, title text NOT NULL, domain text,"
    " completed boolean NOT NULL DEFAULT false)",
    "CREATE TABLE IF NOT EXISTS users (username text PRIMARY KEY, password_hash text NOT NULL)",
)


class DatabaseUnavailable(Exception):
    """No connection within the pool timeout, or the server cannot be reached."""


class Conflict(Exception):
    """A create or update would duplicate a unique key."""


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, digest = encoded.split("$")
        if algorithm != "pbkdf2_sha256":
            return False
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


# A hash to check unknown users' passwords against, so they take as long as known ones.
_DUMMY_HASH = hash_password("not-a-real-password")


class Database:
    def __init__(self, cfg: dict, metrics: Any, faults: Any):
        db = cfg["database"]
        self.metrics = metrics
        self.faults = faults
        self.pool_max = db["pool_max"]
        self.timeout = float(db["pool_timeout_seconds"])
        conninfo = psycopg.conninfo.make_conninfo(
            host=db["host"],
            port=db["port"],
            dbname=db["name"],
            user=db["user"],
            password=db["password"] or None,
            application_name=cfg["service_name"],
            connect_timeout=max(2, math.ceil(self.timeout)),
            options=f"-c statement_timeout={db['statement_timeout_ms']}",
        )
        self.pool = ConnectionPool(
            conninfo,
            min_size=db["pool_min"],
            max_size=db["pool_max"],
            timeout=self.timeout,
            open=False,
            name=cfg["service_name"],
            kwargs={"autocommit": True, "row_factory": dict_row},
        )
        self.schema_ready = False

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close(timeout=5)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            self.metrics.error("database", "pool_timeout")
            raise DatabaseUnavailable(f"no database connection within {self.timeout:g}s") from exc
        except psycopg.errors.QueryCanceled:
            raise  # statement_timeout: an OperationalError, but the server is there
        except psycopg.OperationalError as exc:
            # Lost connection mid-query (already counted by execute()).
            raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc

    def execute(self, conn: psycopg.Connection, operation: str, sql: str, params: Any = None) -> psycopg.Cursor:
        """Run one statement on ``conn``, timed and counted under ``operation`` (slow_query fault first)."""
        start = time.perf_counter()
        status = "success"
        try:
            if operation not in ("health", "schema"):
                delay = self.faults.slow_query()
                if delay:
                    conn.execute("SELECT pg_sleep(%s)", (delay,))
            return conn.execute(sql, params)
        except psycopg.Error as exc:
            status = "error"
            if not isinstance(exc, psycopg.errors.UniqueViolation):
                self.metrics.error("database", exc.sqlstate or type(exc).__name__)
            raise
        finally:
            self.metrics.db_query(operation, status, time.perf_counter() - start)

    def query(self, operation: str, sql: str, params: Any = None) -> list[dict]:
        with self.connection() as conn:
            cur = self.execute(conn, operation, sql, params)
            return cur.fetchall() if cur.description else []

    def ping(self) -> None:
        self.query("health", "SELECT 1")

    def ensure_schema(self, users: list[dict]) -> None:
        """Create the tables if missing and seed the configured users (idempotent, concurrency-safe)."""
        with self.connection() as conn, conn.transaction():
            self.execute(conn, "schema", "SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            for statement in SCHEMA:
                self.execute(conn, "schema", statement)
            for user in users:
                row = self.execute(
                    conn, "schema", "SELECT password_hash FROM users WHERE username = %s", (user["username"],)
                ).fetchone()
                if row and check_password(user["password"], row["password_hash"]):
                    continue
                self.execute(
                    conn,
                    "schema",
                    "INSERT INTO users (username, password_hash) VALUES (%s, %s)"
                    " ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash",
                    (user["username"], hash_password(user["password"])),
                )
        self.schema_ready = True

    def business_counts(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Totals and metric counts by domain/category/tag, for the business gauges."""
        totals = self.query(
            "sync",
            "SELECT (SELECT count(*) FROM metrics) AS metrics, (SELECT count(*) FROM domains) AS domains,"
            " (SELECT count(*) FROM objectives) AS objectives,"
            " (SELECT count(*) FROM objectives WHERE completed) AS objectives_completed",
        )[0]
        rows = self.query(
            "sync",
            "SELECT 'domain' AS kind, data->>'domain' AS label, count(*) AS n FROM metrics GROUP BY 2"
            " UNION ALL SELECT 'category', data->>'category', count(*) FROM metrics GROUP BY 2"
            " UNION ALL SELECT 'tag', t, count(*) FROM metrics,"
            " jsonb_array_elements_text(COALESCE(data->'tags', '[]'::jsonb)) AS t GROUP BY 2",
        )
        breakdown: dict[str, dict[str, float]] = {"domain": {}, "category": {}, "tag": {}}
        for row in rows:
            breakdown[row["kind"]][row["label"] or ""] = row["n"]
        return {k: float(v) for k, v in totals.items()}, breakdown


class _Cached:
    """What the stores share: the database, the cache, the tracer, the business gauges."""

    entity = ""  # span name prefix: MetricStore, DomainStore, ObjectiveStore
    prefix = ""  # cache key prefix of one item; "<prefix>s:list" holds the list pages

    def __init__(self, db: Database, cache: Any, tracing: Any, metrics: Any):
        self.db = db
        self.cache = cache
        self.tracing = tracing
        self.metrics = metrics

    def _span(self, op: str, **attributes: Any):
        return self.tracing.span(f"{self.entity}.{op}", attributes or None)

    def _list_key(self) -> str:
        return f"{self.prefix}s:list"

    def _invalidate(self, item_id: Any = None) -> None:
        keys = [self._list_key()]
        if item_id is not None:
            keys.append(f"{self.prefix}:{item_id}")
        self.cache.delete(*keys)

    def _cached_list(self, limit: int, offset: int, sql: str, mapper=dict) -> list[dict]:
        with self._span("findAll", **{"list.limit": limit, "list.offset": offset}) as span:
            field = f"{limit}:{offset}"
            items = self.cache.hget(self._list_key(), field, f"{self.prefix}s_list")
            if items is None:
                items = [mapper(r) for r in self.db.query("select", sql, (limit, offset))]
                self.cache.hset(self._list_key(), field, items)
            span.set_attribute("list.count", len(items))
            return items


class MetricStore(_Cached):
    entity = "MetricStore"
    prefix = "metric"

    def find_by_id(self, metric_id: str) -> dict | None:
        with self._span("findById", **{"metric.id": metric_id}) as span:
            key = f"metric:{metric_id}"
            data = self.cache.get(key, "metric")
            if data is None:
                rows = self.db.query("select", "SELECT data FROM metrics WHERE data->>'metric_id' = %s", (metric_id,))
                data = rows[0]["data"] if rows else None
                if data is not None:
                    self.cache.set(key, data)
            span.set_attribute("metric.found", data is not None)
            return data

    def find_all(self, limit: int, offset: int) -> list[dict]:
        return self._cached_list(
            limit, offset, "SELECT data FROM metrics ORDER BY id LIMIT %s OFFSET %s", lambda r: r["data"]
        )

    def create(self, data: dict) -> dict:
        with self._span("create", **{"metric.id": data["metric_id"]}):
            rows = self.db.query(
                "insert",
                "INSERT INTO metrics (data) VALUES (%s) ON CONFLICT ((data->>'metric_id')) DO NOTHING RETURNING data",
                (Jsonb(data),),
            )
            if not rows:
                raise Conflict(f"metric {data['metric_id']} already exists")
            self._invalidate()
            self.metrics.business_delta("metric", +1, data)
            return rows[0]["data"]

    def update(self, metric_id: str, changes: dict) -> dict | None:
        with self._span("update", **{"metric.id": metric_id}) as span:
            rows = self.db.query(
                "update",
                "UPDATE metrics m SET data = o.data || %s FROM (SELECT id, data FROM metrics"
                " WHERE data->>'metric_id' = %s FOR UPDATE) o WHERE m.id = o.id RETURNING o.data AS old, m.data",
                (Jsonb(changes), metric_id),
            )
            span.set_attribute("metric.found", bool(rows))
            if not rows:
                return None
            self._invalidate(metric_id)
            self.metrics.business_delta("metric", -1, rows[0]["old"])
            self.metrics.business_delta("metric", +1, rows[0]["data"])
            return rows[0]["data"]

    def delete(self, metric_id: str) -> bool:
        with self._span("delete", **{"metric.id": metric_id}) as span:
            rows = self.db.query(
                "delete", "DELETE FROM metrics WHERE data->>'metric_id' = %s RETURNING data", (metric_id,)
            )
            span.set_attribute("metric.found", bool(rows))
            if rows:
                self._invalidate(metric_id)
                self.metrics.business_delta("metric", -1, rows[0]["data"])
            return bool(rows)


class _RowStore(_Cached):
    """A table with a serial ``id`` and the columns ``columns``."""

    table = ""
    columns: tuple[str, ...] = ()
    attr = ""  # span attribute prefix: domain, objective

    def find_by_id(self, item_id: int) -> dict | None:
        with self._span("findById", **{f"{self.attr}.id": item_id}) as span:
            key = f"{self.prefix}:{item_id}"
            row = self.cache.get(key, self.prefix)
            if row is None:
                rows = self.db.query("select", f"SELECT * FROM {self.table} WHERE id = %s", (item_id,))
                row = rows[0] if rows else None
                if row is not None:
                    self.cache.set(key, row)
            span.set_attribute(f"{self.attr}.found", row is not None)
            return row

    def find_all(self, limit: int, offset: int) -> list[dict]:
        return self._cached_list(limit, offset, f"SELECT * FROM {self.table} ORDER BY id LIMIT %s OFFSET %s")

    def create(self, data: dict) -> dict:
        with self._span("create") as span:
            cols = [c for c in self.columns if c in data]
            try:
                rows = self.db.query(
                    "insert",
                    f"INSERT INTO {self.table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
                    " RETURNING *",
                    [data[c] for c in cols],
                )
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"{self.attr} already exists") from exc
            span.set_attribute(f"{self.attr}.id", rows[0]["id"])
            self._invalidate()
            self._created(rows[0], +1)
            return rows[0]

    def update(self, item_id: int, changes: dict) -> dict | None:
        with self._span("update", **{f"{self.attr}.id": item_id}) as span:
            cols = [c for c in self.columns if c in changes]
            sets = ", ".join(f"{c} = %s" for c in cols) or "id = t.id"
            try:
                rows = self.db.query(
                    "update",
                    f"UPDATE {self.table} t SET {sets} FROM (SELECT * FROM {self.table} WHERE id = %s FOR UPDATE) o"
                    " WHERE t.id = o.id RETURNING row_to_json(o.*) AS old, row_to_json(t.*) AS new",
                    [*(changes[c] for c in cols), item_id],
                )
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"{self.attr} already exists") from exc
            span.set_attribute(f"{self.attr}.found", bool(rows))
            if not rows:
                return None
            self._invalidate(item_id)
            self._updated(rows[0]["old"], rows[0]["new"])
            return rows[0]["new"]

    def delete(self, item_id: int) -> bool:
        with self._span("delete", **{f"{self.attr}.id": item_id}) as span:
            rows = self.db.query("delete", f"DELETE FROM {self.table} WHERE id = %s RETURNING *", (item_id,))
            span.set_attribute(f"{self.attr}.found", bool(rows))
            if rows:
                self._invalidate(item_id)
                self._created(rows[0], -1)
            return bool(rows)

    def _created(self, row: dict, delta: int) -> None:
        self.metrics.business_delta(self.attr, delta)

    def _updated(self, old: dict, new: dict) -> None:
        pass


class DomainStore(_RowStore):
    entity = "DomainStore"
    prefix = "domain"
    table = "domains"
    columns = ("name", "description")
    attr = "domain"


class ObjectiveStore(_RowStore):
    entity = "ObjectiveStore"
    prefix = "objective"
    table = "objectives"
    columns = ("title", "domain", "completed")
    attr = "objective"

    def _created(self, row: dict, delta: int) -> None:
        self.metrics.business_delta("objective", delta, completed=bool(row.get("completed")))

    def _updated(self, old: dict, new: dict) -> None:
        if bool(old.get("completed")) != bool(new.get("completed")):
            self.metrics.business_delta("objective_completed", 1 if new.get("completed") else -1)


class UserStore:
    def __init__(self, db: Database):
        self.db = db

    def verify(self, username: str, password: str) -> str | None:
        """None if the password is right, else the failure reason (unknown_user, bad_credentials)."""
        rows = self.db.query("select", "SELECT password_hash FROM users WHERE username = %s", (username,))
        if not rows:
            check_password(password, _DUMMY_HASH)
            return "unknown_user"
        return None if check_password(password, rows[0]["password_hash"]) else "bad_credentials"
