"""Entry point: ``python -m mdl_api --config /etc/mdl-api/config.json [--check-config]``.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, or the ``stop`` fault), 2 for
an invalid configuration (each problem on stderr, naming its key), 1 if the
service cannot start (listen address in use, log file not writable).

Startup: tracing first (the psycopg and Redis instrumentation must wrap the
libraries before any connection exists), then logging, metrics, the pool, the
schema (retried in the background while the database is unreachable; /health
answers 503 until it exists), and waitress with ``threads`` workers. A
background thread refreshes the business gauges, the cache size and the active
users every ``business_sync_seconds``. On SIGTERM: stop serving, release the
faults, close the pool, flush the queued spans.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import config


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mdl_api", description="The MDL API reference service.")
    parser.add_argument("--config", required=True, help="path of the JSON configuration file")
    parser.add_argument("--check-config", action="store_true", help="only validate the configuration (exit 0 or 2)")
    return parser.parse_args(argv)


class Maintenance(threading.Thread):
    """Schema retries, then the periodic refresh of the gauges that are read from the stores."""

    def __init__(self, cfg, *, db, cache, metrics, tracing, log):
        super().__init__(name="mdl-maintenance", daemon=True)
        self.cfg, self.db, self.cache, self.metrics, self.tracing, self.log = cfg, db, cache, metrics, tracing, log
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = float(self.cfg["business_sync_seconds"])
        while not self.stopping.is_set():
            with self.tracing.suppressed():
                if not self.db.schema_ready:
                    try:
                        self.db.ensure_schema(self.cfg["users"])
                        self.log.info("database schema ready")
                    except Exception as exc:
                        self.log.error("database schema not created yet: %s", exc)
                        self.stopping.wait(2)
                        continue
                self.refresh()
            self.stopping.wait(interval)

    def refresh(self) -> None:
        if not self.metrics.enabled:
            return
        try:
            totals, breakdown = self.db.business_counts()
            self.metrics.set_business(totals, breakdown)
        except Exception as exc:
            self.log.warning("business metrics sync failed: %s", exc)
        try:
            self.metrics.set_cache_size(self.cache.used_memory())
            self.cache.refresh_active_users()
        except Exception as exc:
            self.log.warning("cache metrics refresh failed: %s", exc)


def _on_signal(_signum, _frame):
    # Raised in the main thread, inside waitress' loop, which then stops its workers.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        for error in exc.errors:
            print(f"mdl-api: invalid configuration: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"mdl-api: configuration {args.config} is valid")
        return 0
    return serve(cfg)


def serve(cfg: dict) -> int:
    """Build the service from ``cfg`` and serve until SIGTERM/SIGINT (or the stop fault)."""
    # Imported only now: --check-config needs nothing but the standard library.
    import waitress  # noqa: PLC0415

    from . import logs  # noqa: PLC0415
    from .app import App  # noqa: PLC0415
    from .cache import Cache  # noqa: PLC0415
    from .faults import Faults  # noqa: PLC0415
    from .metrics import Metrics  # noqa: PLC0415
    from .store import Database  # noqa: PLC0415
    from .tracing import Tracing  # noqa: PLC0415

    tracing = Tracing(cfg)
    try:
        log = logs.setup(cfg, tracing.current_ids)
    except OSError as exc:
        print(f"mdl-api: cannot open log file {cfg['log']['path']}: {exc}", file=sys.stderr)
        return 1
    metrics = Metrics(cfg["service_name"], cfg["version"], enabled=cfg["metrics"]["enabled"])

    def stop_soon() -> None:
        log.warning("stop fault: exiting with status 0")
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()

    db_cfg = cfg["database"]
    faults = Faults(
        cfg["faults"]["enabled"],
        cfg["faults"]["token"],
        db_cfg["pool_max"],
        float(db_cfg["pool_timeout_seconds"]),
        on_stop=stop_soon,
    )
    db = Database(cfg, metrics, faults)
    faults.bind_pool(db.pool)
    metrics.bind_pool(db.pool.get_stats, db_cfg["pool_max"])
    cache = Cache(cfg, metrics, faults)
    application = App(cfg, metrics=metrics, tracing=tracing, faults=faults, db=db, cache=cache)
    try:
        server = waitress.create_server(
            tracing.wrap_wsgi(application), listen=cfg["listen"], threads=cfg["threads"], ident="mdl-api"
        )
    except OSError as exc:
        print(f"mdl-api: cannot listen on {cfg['listen']}: {exc}", file=sys.stderr)
        log.error("cannot listen on %s: %s", cfg["listen"], exc)
        return 1

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    db.open()
    maintenance = Maintenance(cfg, db=db, cache=cache, metrics=metrics, tracing=tracing, log=log)
    maintenance.start()
    log.info(
        "server listening",
        extra={
            "fields": {
                "listen": cfg["listen"],
                "version": cfg["version"],
                "environment": cfg["environment"],
                "threads": cfg["threads"],
                "tracing": tracing.enabled,
                "metrics": metrics.enabled,
                "faults": faults.enabled,
            }
        },
    )
    try:
        server.run()
    finally:
        log.info("shutting down")
        maintenance.stopping.set()
        faults.replace({})
        db.close()
        tracing.shutdown()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
