"""The MDL API reference workload: a small WSGI service instrumented as the plan describes.

Modules:

* ``config``  - the JSON configuration file and its validation (``--check-config``).
* ``metrics`` - the Prometheus registry (the plan's MetricsService names, labels,
  buckets and default labels ``app``/``version``) and path normalisation.
* ``tracing`` - OpenTelemetry: OTLP/HTTP exporter, WSGI, psycopg and Redis
  instrumentation, and the ``mdl-storage`` tracer of the custom spans.
* ``logs``    - Pino-style JSON lines with trace ids and redaction.
* ``store``   - PostgreSQL (psycopg 3 pool), the schema and the Metric/Domain/
  Objective/User stores.
* ``cache``   - the Redis read-through cache, login tokens and active users.
* ``faults``  - fault injection for test environments (``/admin/faults``).
* ``validation`` - the request bodies' fields, types and limits.
* ``app``     - the WSGI application: routing, handlers, request middleware.

Run it with ``python -m mdl_api --config /etc/mdl-api/config.json``.
"""

__version__ = "1.0.0"
