"""Prometheus metrics: the plan's MetricsService (names, labels, buckets) on its own registry.

prom-client's ``registry.setDefaultLabels({app, version})`` has no equivalent in
prometheus_client, so the exposition goes through ``_DefaultLabels``, a
collector that adds ``app`` and ``version`` to every sample of the inner
registry (a metric's own label of the same name wins, as in prom-client).

``Metrics(enabled=False)`` (config ``metrics.enabled: false``) creates no
registry at all and every recording method is a no-op, so the overhead
benchmark measures the service without instrumentation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

HTTP_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5)
HTTP_SIZE_BUCKETS = (100, 1000, 10000, 100000, 1000000)
DB_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# The path label of a request no route matched: one value, whatever the path.
UNMATCHED_PATH = "unmatched"
# At most this many label values per business gauge (domain, category, tag);
# the rest are summed under "other" so user input cannot explode cardinality.
MAX_BUSINESS_LABELS = 100
OTHER_LABEL = "other"
CACHE_KEYS = ("metric", "metrics_list", "domain", "domains_list", "objective", "objectives_list")
AUTH_FAILURE_REASONS = ("bad_credentials", "unknown_user", "injected", "missing_token", "invalid_token")

_METRIC_ID_RE = re.compile(r"/METRIC-[A-Z0-9-]+")
_UUID_RE = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_NUMBER_RE = re.compile(r"/\d+")


def normalize_path(path: str) -> str:
    """The plan's normalizePath: ids replaced so the path label stays bounded."""
    path = _METRIC_ID_RE.sub("/METRIC-:id", path)
    path = _UUID_RE.sub("/:uuid", path)
    return _NUMBER_RE.sub("/:id", path)


class _DefaultLabels:
    """Collector yielding the inner registry's metrics with the default labels added to every sample."""

    def __init__(self, inner: CollectorRegistry, labels: dict[str, str]):
        self._inner = inner
        self._labels = labels

    def collect(self) -> Iterable:
        for family in self._inner.collect():
            family.samples = [s._replace(labels={**self._labels, **s.labels}) for s in family.samples]
            yield family


def capped(counts: dict[str, float], limit: int = MAX_BUSINESS_LABELS) -> dict[str, float]:
    """The ``limit`` largest entries of ``counts``, the rest summed under "other"."""
    if len(counts) <= limit:
        return dict(counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[: limit - 1])
    kept[OTHER_LABEL] = kept.get(OTHER_LABEL, 0) + sum(v for _, v in ranked[limit - 1 :])
    return kept


class Metrics:
    """The service's metrics; the methods are what the rest of the code records through."""

    def __init__(self, app: str, version: str, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        # No *_created samples: prom-client has none and nothing here reads them.
        disable_created_metrics()
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests_total = Counter(
            "http_requests_total", "Total number of HTTP requests", ["method", "path", "status_code"], registry=r
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration in seconds",
            ["method", "path", "status_code"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=r,
        )
        self.http_request_size = Histogram(
            "http_request_size_bytes",
            "HTTP request size in bytes",
            ["method", "path"],
            buckets=HTTP_SIZE_BUCKETS,
            registry=r,
        )
        self.http_response_size = Histogram(
            "http_response_size_bytes",
            "HTTP response size in bytes",
            ["method", "path"],
            buckets=HTTP_SIZE_BUCKETS,
            registry=r,
        )
        self.metrics_total = Gauge("mdl_metrics_total", "Total number of metrics", registry=r)
        self.domains_total = Gauge("mdl_domains_total", "Total number of domains", registry=r)
        self.objectives_total = Gauge("mdl_objectives_total", "Total number of objectives", registry=r)
        self.objectives_completed = Gauge("mdl_objectives_completed", "Number of completed objectives", registry=r)
        self.metrics_by_domain = Gauge("mdl_metrics_by_domain", "Number of metrics per domain", ["domain"], registry=r)
        self.metrics_by_category = Gauge(
            "mdl_metrics_by_category", "Number of metrics per category", ["category"], registry=r
        )
        self.metrics_by_tag = Gauge("mdl_metrics_by_tag", "Number of metrics per tag", ["tag"], registry=r)
        self.active_users = Gauge(
            "mdl_active_users", "Number of active users (login or authenticated request in the window)", registry=r
        )
        self.db_connections_active = Gauge("db_connections_active", "Number of active database connections", registry=r)
        self.db_connections_idle = Gauge("db_connections_idle", "Number of idle database connections", registry=r)
        self.db_connections_max = Gauge(
            "db_connections_max", "Maximum size of the database connection pool", registry=r
        )
        self.db_query_duration = Histogram(
            "db_query_duration_seconds",
            "Database query duration in seconds",
            ["operation"],
            buckets=DB_DURATION_BUCKETS,
            registry=r,
        )
        self.db_queries_total = Counter(
            "db_queries_total", "Total number of database queries", ["operation", "status"], registry=r
        )
        self.cache_hits = Counter("cache_hits_total", "Total number of cache hits", ["cache_key"], registry=r)
        self.cache_misses = Counter("cache_misses_total", "Total number of cache misses", ["cache_key"], registry=r)
        self.cache_size = Gauge("cache_size_bytes", "Cache size in bytes (Redis used_memory)", registry=r)
        self.errors_total = Counter("errors_total", "Total number of errors", ["error_type", "error_code"], registry=r)
        self.auth_failures = Counter(
            "mdl_auth_failures_total", "Failed authentications by reason", ["reason"], registry=r
        )
        # Known label values start at 0, so rate() and the hit ratio work from the first scrape.
        for key in CACHE_KEYS:
            self.cache_hits.labels(key)
            self.cache_misses.labels(key)
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason)
        self._labels: dict[str, set[str]] = {"domain": set(), "category": set(), "tag": set()}
        self._labels_lock = threading.Lock()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._exposition = CollectorRegistry(auto_describe=False)
        self._exposition.register(_DefaultLabels(r, {"app": app, "version": version}))

    # -- exposition ---------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self._exposition)

    # -- HTTP ---------------------------------------------------------------
    def observe_request(
        self, method: str, path: str, status: int, *, seconds: float, request_bytes: int, response_bytes: int
    ) -> None:
        if not self.enabled:
            return
        code = str(status)
        self.http_requests_total.labels(method, path, code).inc()
        self.http_request_duration.labels(method, path, code).observe(seconds)
        if request_bytes > 0:
            self.http_request_size.labels(method, path).observe(request_bytes)
        if response_bytes > 0:
            self.http_response_size.labels(method, path).observe(response_bytes)

    def error(self, error_type: str, error_code: int | str) -> None:
        if self.enabled:
            self.errors_total.labels(error_type, str(error_code)).inc()

    def auth_failure(self, reason: str) -> None:
        if self.enabled:
            self.auth_failures.labels(reason).inc()

    # -- database -----------------------------------------------------------
    def db_query(self, operation: str, status: str, seconds: float) -> None:
        if not self.enabled:
            return
        self.db_query_duration.labels(operation).observe(seconds)
        self.db_queries_total.labels(operation, status).inc()

    def bind_pool(self, stats: Callable[[], dict], pool_max: int) -> None:
        """Pool gauges read from the pool at scrape time (``stats`` is ConnectionPool.get_stats)."""
        if not self.enabled:
            return
        self.db_connections_max.set(pool_max)
        self.db_connections_active.set_function(lambda: _pool_active(stats()))
        self.db_connections_idle.set_function(lambda: stats().get("pool_available", 0))

    # -- cache --------------------------------------------------------------
    def cache_hit(self, key: str) -> None:
        if self.enabled:
            self.cache_hits.labels(key).inc()

    def cache_miss(self, key: str) -> None:
        if self.enabled:
            self.cache_misses.labels(key).inc()

    def set_cache_size(self, size: float) -> None:
        if self.enabled:
            self.cache_size.set(size)

    def set_active_users(self, count: int) -> None:
        if self.enabled:
            self.active_users.set(count)

    # -- business -----------------------------------------------------------
    def set_business(self, totals: dict[str, float], breakdown: dict[str, dict[str, float]]) -> None:
        """The periodic sync: totals (metrics, domains, objectives, objectives_completed) and
        the metric counts by domain, category and tag (stale label values removed)."""
        if not self.enabled:
            return
        self.metrics_total.set(totals["metrics"])
        self.domains_total.set(totals["domains"])
        self.objectives_total.set(totals["objectives"])
        self.objectives_completed.set(totals["objectives_completed"])
        for gauge, name in (
            (self.metrics_by_domain, "domain"),
            (self.metrics_by_category, "category"),
            (self.metrics_by_tag, "tag"),
        ):
            values = capped(breakdown[name])
            with self._labels_lock:
                for label in self._labels[name] - set(values):
                    gauge.remove(label)
                self._labels[name] = set(values)
                for label, value in values.items():
                    gauge.labels(label).set(value)

    def business_delta(self, kind: str, delta: int, metric: dict | None = None, completed: bool = False) -> None:
        """A create (+1) or delete (-1) seen by this instance, before the next sync."""
        if not self.enabled:
            return
        if kind == "metric":
            self.metrics_total.inc(delta)
            if metric:
                self._labelled_inc("domain", self.metrics_by_domain, str(metric.get("domain", "")), delta)
                self._labelled_inc("category", self.metrics_by_category, str(metric.get("category", "")), delta)
                for tag in set(metric.get("tags") or []):
                    self._labelled_inc("tag", self.metrics_by_tag, str(tag), delta)
        elif kind == "domain":
            self.domains_total.inc(delta)
        elif kind == "objective":
            self.objectives_total.inc(delta)
            if completed:
                self.objectives_completed.inc(delta)
        elif kind == "objective_completed":
            self.objectives_completed.inc(delta)

    def _labelled_inc(self, name: str, gauge: Gauge, label: str, delta: int) -> None:
        with self._labels_lock:
            if label not in self._labels[name] and len(self._labels[name]) >= MAX_BUSINESS_LABELS:
                label = OTHER_LABEL
            self._labels[name].add(label)
            gauge.labels(label).inc(delta)


def _pool_active(stats: dict) -> float:
    return max(0, stats.get("pool_size", 0) - stats.get("pool_available", 0))
