"""OpenTelemetry tracing: server spans (WSGI), client spans (psycopg, Redis) and the storage spans.

The plan exports with ``@opentelemetry/exporter-jaeger``; that exporter (and
Jaeger's own Thrift collector protocol) is deprecated upstream in favour of
OTLP, which is what Jaeger v2 receives natively, so spans go out with the
OTLP/HTTP (protobuf) exporter to ``tracing.otlp_endpoint``
(http://<jaeger>:4318/v1/traces), batched by a BatchSpanProcessor. Over
https with ``tracing.otlp_ca_file`` the exporter verifies Jaeger against that
CA only.

Sampling: ``ParentBased(TraceIdRatioBased(sample_ratio))``: an incoming
``traceparent`` decides for its trace, new traces are sampled at the ratio.

With ``tracing.enabled: false`` nothing of the SDK is imported or installed:
no middleware, no instrumentation, ``span()`` is a no-op context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from . import __version__

STORAGE_TRACER = "mdl-storage"
# Probes and scrapes are not traced: Prometheus' scrape every interval and every
# health check (with its database and cache pings) would each be a trace of its
# own, noise in Jaeger and in the trace coverage, at about 1 ms of CPU each.
UNTRACED_PATHS = frozenset({"/health", "/metrics"})


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass


_NO_SPAN = _NoSpan()


class Tracing:
    def __init__(self, cfg: dict):
        tcfg = cfg["tracing"]
        self.enabled = bool(tcfg["enabled"])
        self.provider = None
        if not self.enabled:
            return
        from opentelemetry import trace  # noqa: PLC0415 - only imported when tracing is on
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: PLC0415
        from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        self._trace = trace
        self._ok = Status(StatusCode.OK)
        resource = Resource.create(
            {
                "service.name": cfg["service_name"],
                "service.version": cfg["version"],
                "deployment.environment": cfg["environment"],
                "deployment.environment.name": cfg["environment"],
            }
        )
        self.provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(float(tcfg["sample_ratio"])))
        )
        timeout = float(tcfg["export_timeout_seconds"])
        ca_file = tcfg.get("otlp_ca_file") or None
        session = None
        if ca_file:
            import requests  # noqa: PLC0415 - the exporter's own HTTP client

            # requests lets REQUESTS_CA_BUNDLE replace the session's CA file
            # unless the session ignores the environment (proxies too: the
            # exporter dials Jaeger directly).
            session = requests.Session()
            session.trust_env = False
        exporter = OTLPSpanExporter(
            endpoint=tcfg["otlp_endpoint"], certificate_file=ca_file, session=session, timeout=timeout
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=timeout * 1000))
        trace.set_tracer_provider(self.provider)
        # Global wrappers: psycopg.Connection.connect (which the pool's PoolConnection
        # inherits; the unit tests check the pool's queries do get client spans)
        # and redis.Redis.execute_command / pipelines.
        PsycopgInstrumentor().instrument(tracer_provider=self.provider)
        RedisInstrumentor().instrument(tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer(STORAGE_TRACER, __version__)

    def wrap_wsgi(self, app: Callable) -> Callable:
        """The WSGI app inside OpenTelemetryMiddleware (server spans; incoming traceparent honoured),
        but for UNTRACED_PATHS: those run without a server span and with client spans suppressed."""
        if not self.enabled:
            return app
        from opentelemetry.instrumentation.utils import suppress_instrumentation  # noqa: PLC0415
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware  # noqa: PLC0415

        traced = OpenTelemetryMiddleware(app, tracer_provider=self.provider)

        def dispatch(environ: dict, start_response: Callable) -> Any:
            if environ.get("PATH_INFO") in UNTRACED_PATHS:
                with suppress_instrumentation():  # the app builds its whole body inside the call
                    return app(environ, start_response)
            return traced(environ, start_response)

        return dispatch

    @contextlib.contextmanager
    def span(self, name: str, attributes: dict[str, Any] | None = None) -> Iterator[Any]:
        """A ``mdl-storage`` span around the block: exception recorded and ERROR status if it raises."""
        if not self.enabled:
            yield _NO_SPAN
            return
        with self.tracer.start_as_current_span(
            name, attributes=attributes, record_exception=True, set_status_on_exception=True
        ) as span:
            yield span
            span.set_status(self._ok)

    def current_ids(self) -> tuple[str, str] | None:
        """(trace_id, span_id) in hex of the current span, None without one (or with tracing off)."""
        if not self.enabled:
            return None
        ctx = self._trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")

    def server_span(self) -> Any:
        """The current (server) span, or None with tracing off."""
        return self._trace.get_current_span() if self.enabled else None

    @contextlib.contextmanager
    def suppressed(self) -> Iterator[None]:
        """No client spans in the block (the background refresh jobs would start a root trace each)."""
        if not self.enabled:
            yield
            return
        from opentelemetry.instrumentation.utils import suppress_instrumentation  # noqa: PLC0415

        with suppress_instrumentation():
            yield

    def shutdown(self) -> None:
        """Export what is still queued (SIGTERM, fault ``stop``)."""
        if self.provider is not None:
            self.provider.shutdown()
