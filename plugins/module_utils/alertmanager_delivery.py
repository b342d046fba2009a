"""Delivery evidence of the alertmanager_routing_check module: were the notifications really sent?

Two kinds, chosen by the module's ``delivery`` option:

* MetricsDelivery: ``alertmanager_notifications_total`` of every integration the
  expected receivers use rose on the Alertmanagers, and
  ``alertmanager_notifications_failed_total`` did not (no sink needed, for
  production).
* SinkDelivery: a notification sink recorded the notification of every expected
  receiver, and of no other; with expect_resolved also the resolved notification.

Both have the same interface: ``prepare`` once before the first alert is posted,
``before_batch`` before a batch is posted, ``check`` after it was routed.
"""

from __future__ import annotations

from ansible.module_utils.alertmanager_cases import bracket
from ansible.module_utils.alertmanager_client import SinkClient, receiver_integrations, sum_samples
from ansible.module_utils.alertmanager_fleet import LOST
from ansible.module_utils.http_client import connection_options
from ansible.module_utils.polling import Poll, now, since, sleep

NOTIFICATIONS_TOTAL = "alertmanager_notifications_total"
NOTIFICATIONS_FAILED = "alertmanager_notifications_failed_total"
GROUP_INTERVAL_HINT = (
    "an alert that joins an aggregation group which was already notified is only sent at the group's next"
    " group_interval"
)


def delivery_check(params, fleet, warn):
    """The delivery evidence the module's options ask for: None, MetricsDelivery or SinkDelivery."""
    timing = dict(timeout=params["delivery_timeout"], grace=params["delivery_grace"], interval=params["poll_interval"])
    if params["delivery"] == "metrics":
        return MetricsDelivery(fleet, **timing)
    if params["delivery"] == "sink":
        # The Alertmanagers' credentials are not sent to the sink.
        sink = SinkClient(params["sink_url"], **connection_options(params, credentials=False))
        return SinkDelivery(sink, params["sink_channels"] or {}, warn, **timing)
    return None


class _Delivery:
    def __init__(self, timeout, grace, interval):
        self.timeout = timeout
        self.grace = grace
        self.interval = interval

    def prepare(self, statuses, run_id):
        """Once, before anything is posted: ``statuses`` of every Alertmanager."""

    def before_batch(self):
        """Right before a batch of alerts (sources included) is posted."""

    def check(self, batch, posted_at):
        """After the batch was routed: set delivered, delivered_to and seconds_to_delivery of every case."""
        raise NotImplementedError

    def check_duplicates(self, cases):
        """Once, after the run: cases notified more than once get a problem (only a sink can tell)."""


# ---------------------------------------------------------------------- metrics
class MetricsDelivery(_Delivery):
    """Counters are summed over the Alertmanagers of the fleet that still answer (``fleet.active``): a lost
    one's notifications cannot be read, and the counters of one that restarted begin again at 0."""

    def __init__(self, fleet, **timing):
        super().__init__(**timing)
        self.fleet = fleet
        self.integrations = {}  # receiver -> integrations, from the loaded configs
        self.before = None  # URL -> the metrics of every Alertmanager before the batch

    def _metrics(self):
        """{URL: samples} of the Alertmanagers that answer (a lost one is left out)."""
        scraped = {}
        for client in self.fleet.active:
            samples = self.fleet.call(client, "reading its metrics", client.metrics)
            if samples is not LOST:
                scraped[client.base_url] = samples
        return scraped

    def prepare(self, statuses, run_id):
        for status in statuses:
            config = (status.get("config") or {}).get("original") or ""
            for receiver, integrations in receiver_integrations(config).items():
                self.integrations.setdefault(receiver, set()).update(integrations)

    def before_batch(self):
        self.before = self._metrics()

    def _deltas(self, after, name, integration):
        """[(url, increase of ``name`` for ``integration``)] for every Alertmanager read before and after."""
        return [
            (
                url,
                sum_samples(samples, name, integration=integration)
                - sum_samples(self.before[url], name, integration=integration),
            )
            for url, samples in after.items()
            if url in self.before
        ]

    def _wanted(self, batch):
        """{case id: integrations its expected receivers use}; cases that must be inhibited are skipped."""
        wanted = {}
        for case in batch:
            if case.expected_inhibited:
                case.notes.append(
                    "delivery not checked with delivery=metrics: its sources notify the same integrations"
                )
                continue
            unknown = [receiver for receiver in case.expected if receiver not in self.integrations]
            if unknown:
                case.delivered = False
                case.problems.append(
                    f"receiver(s) {bracket(unknown)} not found in the loaded config of any Alertmanager:"
                    " cannot tell which integration's metrics to watch"
                )
            wanted[case.id] = sorted({i for r in case.expected for i in self.integrations.get(r, ())})
        return wanted

    def _poll(self, involved, posted_at):
        """Poll /metrics until every involved integration notified (plus the grace) or one failed."""
        rose_at = {}
        failed = {}
        poll = Poll(self.timeout, self.interval)
        grace = []  # set once every integration notified: from then on only the grace counts

        def done():
            after = self._metrics()
            for integration in involved:
                total = self._deltas(after, NOTIFICATIONS_TOTAL, integration)
                if integration not in rose_at and sum(delta for _url, delta in total) >= 1:
                    rose_at[integration] = since(posted_at)
                failures = self._deltas(after, NOTIFICATIONS_FAILED, integration)
                if any(delta > 0 for _url, delta in failures):
                    failed[integration] = [(url, delta) for url, delta in failures if delta > 0]
            if failed:
                return True
            if len(rose_at) == len(involved) and not grace:
                grace.append(True)
                poll.deadline = now() + self.grace
            return False

        if involved:
            poll.until(done)
        return rose_at, failed

    def check(self, batch, posted_at):
        wanted = self._wanted(batch)
        involved = sorted({i for integrations in wanted.values() for i in integrations})
        rose_at, failed = self._poll(involved, posted_at)
        for case in batch:
            if case.id not in wanted:
                continue
            integrations = wanted[case.id]
            case.delivered_to = [i for i in integrations if i in rose_at]
            case_failed = [i for i in integrations if i in failed]
            missing = [i for i in integrations if i not in rose_at]
            for integration in case_failed:
                where = ", ".join(f"by {delta:g} on {url}" for url, delta in failed[integration])
                case.problems.append(
                    f'{NOTIFICATIONS_FAILED}{{integration="{integration}"}} rose ({where}): a notification failed,'
                    " see the Alertmanager log"
                )
            if missing and not case_failed:
                case.problems.append(
                    f"no notification sent by integration(s) {bracket(missing)} within {self.timeout} s"
                    f" ({NOTIFICATIONS_TOTAL} did not rise on any Alertmanager; {GROUP_INTERVAL_HINT});"
                    f" sent: {bracket(case.delivered_to)}"
                )
            if case.delivered is None:
                case.delivered = not case_failed and not missing
            if case.delivered and integrations:
                case.seconds_to_delivery = max(rose_at[i] for i in integrations)


# ---------------------------------------------------------------------- sink
def accepted(record):
    """The sink also records notifications it refused (accepted false, with the response_status it sent)."""
    return record.get("accepted", True) is not False


def describe_records(records, channels):
    """What the sink recorded on these channels: '<channel>: <n> <status>[ refused (<code>)]; ...'."""
    counts = {}
    for record in records:
        channel = str(record.get("channel"))
        if channel in channels:
            what = str(record.get("status") or "unknown")
            if not accepted(record):
                what += f" refused ({record.get('response_status')})"
            counts[(channel, what)] = counts.get((channel, what), 0) + 1
    return "; ".join(f"{channel}: {count} {what}" for (channel, what), count in sorted(counts.items()))


class SinkDelivery(_Delivery):
    def __init__(self, sink, sink_channels, warn, **timing):
        super().__init__(**timing)
        self.sink = sink
        self.sink_channels = sink_channels
        self.warn = warn
        self.counts = {}  # case id -> {channel: notifications with its id} when it was resolved

    def prepare(self, statuses, run_id):
        self.sink.received(run_id)  # the sink answers before anything is posted

    def _channels(self, receivers):
        """Sink channels of these receivers (receivers mapped to nothing are left out)."""
        channels = set()
        for receiver in receivers:
            channel = self.sink_channels.get(receiver, receiver)
            if channel not in (None, ""):
                channels.add(str(channel))
        return sorted(channels)

    def _channels_with(self, alert_id, status):
        """Channels whose notification with this id the sink accepted with this status."""
        return {
            str(record.get("channel"))
            for record in self.sink.received(alert_id)
            if accepted(record) and record.get("status") == status
        }

    def _waits(self, batch):
        """{alert id: (case, channels that must get it)}. For a case that must be inhibited (and reach
        nobody) wait for its sources instead, so that "nobody" is checked once that group was notified."""
        waits = {}
        for case in batch:
            if case.expected_inhibited:
                for source in case.sources:
                    channels = self._channels(source.routed or [])
                    if channels:
                        waits[source.id] = (case, channels)
            else:
                channels = self._channels(case.expected)
                if channels:
                    waits[case.id] = (case, channels)
        return waits

    def _poll(self, waits, reached, started):
        """Poll the sink until every waited-for id reached its channels (``reached(id)``); {id: seconds}."""
        arrived = {}

        def all_arrived():
            for alert_id, (_case, channels) in waits.items():
                if alert_id not in arrived and set(channels) <= reached(alert_id):
                    arrived[alert_id] = since(started)
            return len(arrived) == len(waits)

        if waits:
            Poll(self.timeout, self.interval).until(all_arrived)
        return arrived

    def check(self, batch, posted_at):
        waits = self._waits(batch)
        arrived = self._poll(waits, lambda alert_id: self._channels_with(alert_id, "firing"), posted_at)
        if self.grace:
            sleep(self.grace)
        for case in batch:
            records = self.sink.received(case.id)
            firing = sorted({str(r.get("channel")) for r in records if accepted(r) and r.get("status") == "firing"})
            case.delivered_to = sorted({str(r.get("channel")) for r in records if accepted(r)})
            attempted = sorted({str(r.get("channel")) for r in records})
            if case.expected_inhibited:
                expected = []
                for source in case.sources:
                    if source.id in waits and source.id not in arrived:
                        case.notes.append(
                            f"its inhibiting source {source.id} did not reach {bracket(waits[source.id][1])} within"
                            f" {self.timeout} s, so 'reached nobody' was only watched for that long"
                            f" plus {self.grace} s"
                        )
                        self.warn(f"case {case.name}: {case.notes[-1]}")
            else:
                expected = self._channels(case.expected)
            missing = [channel for channel in expected if channel not in firing]
            unexpected = [channel for channel in attempted if channel not in expected]
            if missing:
                seen = describe_records(records, missing)
                case.problems.append(
                    f"delivery of {case.what} incomplete after {self.timeout} s: received by"
                    f" {bracket(firing)}, missing {bracket(missing)}"
                    + (f" (what those channels got: {seen})" if seen else f" ({GROUP_INTERVAL_HINT})")
                )
            if unexpected and case.expected_inhibited:
                case.problems.append(
                    f"{case.what} is inhibited and must reach nobody, but reached {bracket(unexpected)}"
                )
            elif unexpected:
                case.problems.append(
                    f"{case.what} also reached {bracket(unexpected)}, which must not be notified"
                    f" (expected only {bracket(expected)})"
                )
            case.delivered = not missing and not unexpected
            if case.id in arrived and not missing:
                case.seconds_to_delivery = arrived[case.id]

    def check_duplicates(self, cases):
        """Once the run ended: no channel got the same notification of a case twice.

        Every case is its own aggregation group (the role groups by the smoke label), so a second
        firing (or resolved) notification of a case on one channel is a duplicate: sent by two
        Alertmanagers of a cluster whose notification log did not deduplicate it. Checked at the end,
        because the second Alertmanager of a pair only sends after its peer_timeout.
        """
        for case in cases:
            if case.delivered_to is None:
                continue
            counts, senders = {}, {}
            for record in self.sink.received(case.id):
                if accepted(record) and record.get("status") in ("firing", "resolved"):
                    key = (str(record.get("channel")), record["status"])
                    counts[key] = counts.get(key, 0) + 1
                    senders.setdefault(key, []).append(str(record.get("sender") or "?"))
            twice = [
                f"{channel} {count}x {status} from {', '.join(senders[(channel, status)])}"
                for (channel, status), count in sorted(counts.items())
                if count > 1
            ]
            if twice:
                case.delivered = False
                case.problems.append(
                    f"{case.what} was notified more than once ({'; '.join(twice)}): two senders mean more than one"
                    " Alertmanager sent it (cluster gossip did not deduplicate), one sender a retry or a group"
                    " shared with other alerts"
                )

    # ------------------------------------------------------------------ resolved notifications
    def count_records(self, batch):
        """Remember how many notifications of each case every channel got before resolving."""
        for case in batch:
            counts = {}
            for record in self.sink.received(case.id):
                if accepted(record):
                    channel = str(record.get("channel"))
                    counts[channel] = counts.get(channel, 0) + 1
            self.counts[case.id] = counts

    def _resolved_channels(self, alert_id):
        """Channels that got the resolved notification of an alert: a record with status resolved, or any
        new notification with its id after it was resolved. A group notification that also lists alerts
        still firing has status firing, and after resolving, the id can only be in it as resolved."""
        before = self.counts.get(alert_id, {})
        counts = {}
        resolved = set()
        for record in self.sink.received(alert_id):
            if not accepted(record):
                continue
            channel = str(record.get("channel"))
            counts[channel] = counts.get(channel, 0) + 1
            if record.get("status") == "resolved":
                resolved.add(channel)
        return resolved | {channel for channel, count in counts.items() if count > before.get(channel, 0)}

    def wait_resolved(self, cases, expect_resolved):
        """Wait for the resolved notifications of the receivers in ``expect_resolved`` (resolved_notified)."""
        waits = {}
        for case in cases:
            if case.expected_inhibited or not case.resolved:
                continue
            channels = self._channels([r for r in case.expected if r in expect_resolved])
            if channels:
                waits[case.id] = (case, channels)
        done = self._poll(waits, self._resolved_channels, now())
        for alert_id, (case, channels) in waits.items():
            case.resolved_notified = alert_id in done
            if not case.resolved_notified:
                got = self._resolved_channels(alert_id)
                missing = [channel for channel in channels if channel not in got]
                case.problems.append(
                    f"resolved notification of {case.what} not received within {self.timeout} s by"
                    f" {bracket(missing)} (received by {bracket(sorted(got))})"
                )
