"""Spans sent by the real OpenTelemetry Python SDK and its OTLP exporters (gRPC and HTTP/protobuf)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult


class ExportFailed(AssertionError):
    """The exporter reported a failed export (the receiver refused or could not be reached)."""


def published(container: str, port: int | str) -> str:
    """host:port that docker publishes a container's TCP port on (loopback in this project)."""
    out = subprocess.run(["docker", "port", container, f"{port}/tcp"], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()[0].strip()


class _Checked(SimpleSpanProcessor):
    """SimpleSpanProcessor that keeps the exporter's verdict instead of only logging it."""

    results: list

    def __init__(self, exporter):
        super().__init__(exporter)
        self.results = []
        self._exp = exporter

    def on_end(self, span):
        self.results.append(self._exp.export((span,)))


def send_span(
    protocol: str, endpoint: str, service: str, name: str = "obs-probe", attributes=None, *, ca: str | None = None
) -> str:
    """Export one span over OTLP ``protocol`` ('grpc': endpoint host:port; 'http': base URL); its trace id (hex).

    ``ca``: a CA file; the receiver is then reached over TLS and verified against
    that CA only (an https base URL for 'http'). Without it gRPC is plaintext.
    """
    if protocol == "grpc":
        if ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
            exporter = GrpcExporter(endpoint=endpoint, insecure=False, credentials=credentials, timeout=10)
        else:
            exporter = GrpcExporter(endpoint=endpoint, insecure=True, timeout=10)
    elif protocol == "http":
        # requests lets REQUESTS_CA_BUNDLE replace the session's CA file unless
        # the session ignores the environment.
        session = None
        if ca:
            session = requests.Session()
            session.trust_env = False
        exporter = HttpExporter(
            endpoint=endpoint.rstrip("/") + "/v1/traces", certificate_file=ca, session=session, timeout=10
        )
    else:
        raise ValueError(f"protocol must be grpc or http, not {protocol!r}")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    processor = _Checked(exporter)
    provider.add_span_processor(processor)
    with provider.get_tracer("obs-tests").start_as_current_span(name, attributes=attributes or {}) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    if processor.results != [SpanExportResult.SUCCESS]:
        raise ExportFailed(f"OTLP {protocol} export to {endpoint} failed: {processor.results}")
    return trace_id
