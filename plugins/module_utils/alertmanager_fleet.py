"""The Alertmanagers of one alertmanager_routing_check run: posting, listing, routing evidence, resolving.

A Fleet posts every alert to every Alertmanager (as Prometheus does in an HA
setup), waits until each of them lists it as processed, compares the receivers
and the inhibition state each one reports with what the case expects, and
resolves everything it posted. It remembers what it posted, so that a failure
anywhere still resolves it all.

An Alertmanager that stops answering during the run (not reached at all: stopped,
killed, partitioned) is marked lost and the run goes on with the others, as
Prometheus goes on alerting to the rest of a cluster: the cases then prove that
the remaining cluster still routes and notifies. The run fails afterwards when
more were lost than ``max_unavailable`` allows, naming each lost one and when.
"""

from __future__ import annotations

from ansible.module_utils.alertmanager_cases import bracket, rfc3339, utcnow
from ansible.module_utils.alertmanager_client import (
    AlertmanagerClient,
    AlertmanagerError,
    equal_matcher,
    regex_matcher,
)
from ansible.module_utils.http_client import connection_options
from ansible.module_utils.polling import Poll, sleep


def state(alert):
    return str((alert.get("status") or {}).get("state") or "")


def processed(alerts):
    """The first listed alert once Alertmanager processed it (state active or suppressed), else None."""
    if alerts and state(alerts[0]) not in ("", "unprocessed"):
        return alerts[0]
    return None


LOST = object()  # what Fleet.call returns for a request to an Alertmanager it just marked lost


def receiver_names(alert):
    return sorted({r.get("name") for r in alert.get("receivers") or [] if isinstance(r, dict) and r.get("name")})


class Fleet:
    def __init__(self, params, warn):
        """The Alertmanagers of the module's ``urls`` (each once), reached with its connection options."""
        urls = []
        for raw_url in params["urls"]:
            url = raw_url.strip().rstrip("/")
            if url not in urls:
                urls.append(url)
        self.clients = [AlertmanagerClient(url, **connection_options(params)) for url in urls]
        self.smoke_label = params["smoke_label"]
        self.max_unavailable = params["max_unavailable"]
        self.lost = {}  # URL -> what failed, for every Alertmanager that stopped answering during this run
        self.wait_active_timeout = params["wait_active_timeout"]
        self.poll_interval = params["poll_interval"]
        self.warn = warn
        self.alertmanagers = []  # version and cluster state of every Alertmanager, read before posting
        self.posted = {}  # alert id -> the alert as posted
        self.resolve_attempted = set()
        self.rejected = set()  # URLs of Alertmanagers that answered 400 to a POST of this run
        self.resolved_ids = set()
        self.fingerprints = {}  # fingerprint -> smoke id, for every alert of this run that was listed
        self.inhibited_by_own = set()  # (case id, url) where an own inhibited_by source was seen inhibiting
        self.errors = []  # cleanup problems

    @property
    def active(self):
        """The Alertmanagers that have answered every request of this run so far."""
        return [client for client in self.clients if client.base_url not in self.lost]

    def call(self, client, action, request, *args):
        """One request to one Alertmanager. When it is not reached (no HTTP answer) while another one
        still is, it is marked lost for the rest of the run and LOST is returned; else errors propagate."""
        if client.base_url in self.lost:
            return LOST
        try:
            return request(*args)
        except AlertmanagerError as exc:
            others = [other.base_url for other in self.active if other is not client]
            if exc.status is not None or not others:
                raise
            self.lost[client.base_url] = f"unreachable while {action}: {exc.msg}"
            for entry in self.alertmanagers:
                if entry["url"] == client.base_url:
                    entry["lost"] = self.lost[client.base_url]
            self.warn(
                f"Alertmanager {client.base_url} is lost ({self.lost[client.base_url]}); the run goes on with"
                f" {', '.join(others)}"
            )
            return LOST

    def lost_text(self):
        """'<url> <why>; ...' of every lost Alertmanager."""
        return "; ".join(f"{url} {why}" for url, why in self.lost.items())

    def degraded(self):
        """Why the cluster counts as degraded (more Alertmanagers lost than max_unavailable), else None."""
        if len(self.lost) <= self.max_unavailable:
            return None
        rest = ", ".join(client.base_url for client in self.active)
        return (
            f"Alertmanager cluster degraded: {len(self.lost)} of {len(self.clients)} Alertmanager(s) lost during the"
            f" run (max_unavailable={self.max_unavailable}): {self.lost_text()}. The cases ran on the rest ({rest})."
        )

    def read_status(self):
        """GET /api/v2/status of every Alertmanager (before posting anything); returns the statuses."""
        statuses = []
        for client in self.clients:
            entry = {"url": client.base_url, "version": None, "cluster_status": None, "peers": 0, "lost": None}
            self.alertmanagers.append(entry)
            if len(self.lost) < self.max_unavailable:
                status = self.call(client, "reading its status", client.status)
            else:  # without enough Alertmanagers answering, nothing is posted
                status = client.status()
            if status is LOST:
                continue
            cluster = status.get("cluster") or {}
            entry.update(
                version=(status.get("versionInfo") or {}).get("version"),
                cluster_status=cluster.get("status"),
                peers=len(cluster.get("peers") or []),
            )
            statuses.append(status)
        return statuses

    def post(self, alerts):
        for alert in alerts:
            self.posted[alert["labels"][self.smoke_label]] = alert
        for client in self.active:
            try:
                self.call(client, "posting alerts", client.post_alerts, alerts)
            except AlertmanagerError as exc:
                if exc.status == 400:
                    # Alertmanager stores the valid alerts of a rejected batch: they are resolved
                    # in the end, and resolving the batch is expected to be rejected the same way.
                    self.rejected.add(client.base_url)
                raise

    def listed(self, client, alert_id):
        """The alerts of this id listed by one Alertmanager (remembering their fingerprints); LOST when
        that Alertmanager was just lost."""
        alerts = self.call(client, "listing alerts", client.get_alerts, [equal_matcher(self.smoke_label, alert_id)])
        if alerts is LOST:
            return LOST
        mine = [a for a in alerts if isinstance(a, dict) and (a.get("labels") or {}).get(self.smoke_label) == alert_id]
        for alert in mine:
            if alert.get("fingerprint"):
                self.fingerprints[alert["fingerprint"]] = alert_id
        return mine

    def fire_sources(self, batch):
        """Post the inhibited_by source alerts and wait until every Alertmanager lists them."""
        sources = [source for case in batch for source in case.sources]
        if not sources:
            return
        self.post([source.alert for source in sources])
        seen = self.wait_active([(source, None) for source in sources])
        for source in sources:
            names = set()
            for client in self.active:
                names.update(receiver_names(seen[(source.id, client.base_url)][0]))
            source.routed = sorted(names)

    def inhibition_accept(self, case):
        """An alert that must be inhibited is polled until its own sources inhibit it.

        Alertmanager lists only one inhibiting alert in inhibitedBy, picked at
        random when several match (another run's or a real alert), so whether
        an own source was ever listed is remembered across polls.
        """
        if case.expected_inhibited is not True:
            return None
        source_ids = {source.id for source in case.sources}

        def accept(alert, url):
            inhibited_by = (alert.get("status") or {}).get("inhibitedBy") or []
            if not source_ids:
                return bool(inhibited_by)
            if any(self.fingerprints.get(fp) in source_ids for fp in inhibited_by):
                self.inhibited_by_own.add((case.id, url))
                return True
            return False

        return accept

    def wait_active(self, probes):
        """Poll every Alertmanager until each probe's alert is listed as processed.

        probes: [(Case or SourceAlert, accept or None)]. Returns {(id, url): (alert,
        seconds until it was first listed as processed)}. An alert that is listed
        but never accepted is returned as last seen (the caller reports the
        mismatch); one that is never listed raises AlertmanagerError.
        """
        poll = Poll(self.wait_active_timeout, self.poll_interval)
        pending = [(probe, accept, client) for probe, accept in probes for client in self.active]
        first_seen = {}  # (id, url) -> (alert, seconds until it was first listed as processed)
        last = {}
        final = {}

        def all_accepted():
            nonlocal pending
            still = []
            for probe, accept, client in pending:
                key = (probe.id, client.base_url)
                listed = self.listed(client, probe.id)
                if listed is LOST:
                    continue
                last[key] = listed
                alert = processed(last[key])
                if alert is not None:
                    first_seen[key] = (alert, first_seen[key][1] if key in first_seen else poll.elapsed())
                    if accept is None or accept(alert, client.base_url):
                        final[key] = first_seen[key]
                        continue
                still.append((probe, accept, client))
            pending = still
            return not pending

        if poll.until(all_accepted):
            return final
        for probe, _accept, client in pending:
            key = (probe.id, client.base_url)
            if client.base_url in self.lost:
                continue
            if key not in first_seen:
                raise AlertmanagerError(self._not_active_message(probe, client, last.get(key) or []))
            final[key] = first_seen[key]
        return final

    def confirm_inhibition(self, batch, seen):
        """Inhibition is evaluated whenever the API is read: read the state once more."""
        sleep(self.poll_interval)
        for case in batch:
            accept = self.inhibition_accept(case)
            for client in self.active:
                listed = self.listed(client, case.id)
                again = None if listed is LOST else processed(listed)
                if again is not None:
                    key = (case.id, client.base_url)
                    seen[key] = (again, seen[key][1])
                    if accept is not None:
                        accept(again, client.base_url)

    def _not_active_message(self, probe, client, seen):
        if seen:
            saw = "; ".join(self._describe(alert) for alert in seen)
        else:
            saw = f"nothing for {equal_matcher(self.smoke_label, probe.id)}"
            try:
                others = client.get_alerts([regex_matcher(self.smoke_label, ".+")])
            except AlertmanagerError as exc:
                saw += f" (listing the other smoke test alerts failed: {exc.msg})"
            else:
                if others:
                    described = [self._describe(alert) for alert in others[:10]]
                    if len(others) > 10:
                        described.append(f"... {len(others) - 10} more")
                    saw += "; other smoke test alerts there: " + "; ".join(described)
                else:
                    saw += ", and no other smoke test alerts either"
        return f"{probe.what} not active on {client.base_url} after {self.wait_active_timeout} s; saw: {saw}"

    def _describe(self, alert):
        smoke_id = (alert.get("labels") or {}).get(self.smoke_label, "?")
        return f"{self.smoke_label}={smoke_id} state={state(alert) or '?'} receivers={bracket(receiver_names(alert))}"

    def evaluate(self, case, seen, cases):
        """Compare what every Alertmanager reported (``seen``, from wait_active) with what the case expects.

        ``cases`` are all cases of the run (to name the one whose alert inhibits this one).
        """
        inhibited_by = {}
        for client in self.active:
            url = client.base_url
            alert, first_seen = seen[(case.id, url)]
            status = alert.get("status") or {}
            case.seconds_to_active = max(case.seconds_to_active or 0.0, first_seen)
            case.routed_per_am[url] = receiver_names(alert)
            case.state_per_am[url] = state(alert)
            inhibited_by[url] = [self.fingerprints.get(fp, fp) for fp in status.get("inhibitedBy") or []]
            case.inhibited_per_am[url] = state(alert) == "suppressed" and bool(inhibited_by[url])
            if status.get("silencedBy"):
                case.notes.append(f"silenced on {url} by {', '.join(status['silencedBy'])}")
        case.silenced = any(note.startswith("silenced on ") for note in case.notes)
        routing_ok = self._check_routing(case)
        inhibition_ok = self._check_inhibition(case, inhibited_by, cases)
        case.matched = routing_ok and inhibition_ok
        for note in case.notes:
            self.warn(f"case {case.name}: {note}")

    def _check_routing(self, case):
        routings = {tuple(names) for names in case.routed_per_am.values()}
        if routings == {tuple(case.expected)}:
            return True
        if len(routings) == 1:
            case.problems.append(f"routed to {bracket(case.routed)}, expected {bracket(case.expected)}")
        else:
            per_am = "; ".join(f"{url}: {bracket(names)}" for url, names in case.routed_per_am.items())
            case.problems.append(
                f"routed differently by the Alertmanagers ({per_am}), expected {bracket(case.expected)}"
            )
        return False

    def _check_inhibition(self, case, inhibited_by, cases):
        ok = True
        source_ids = {source.id for source in case.sources}
        for url, inhibited in case.inhibited_per_am.items():
            by = inhibited_by[url]
            if case.expected_inhibited is None:
                if case.state_per_am[url] == "suppressed":
                    note = f"suppressed on {url}" + (f" (inhibited by {bracket(by)})" if by else "")
                    culprits = sorted({c.name for c in cases if c is not case and set(c.alert_ids) & set(by)})
                    if culprits:
                        note += (
                            f"; the alert of case(s) {', '.join(culprits)} of this run inhibits it: give this case an"
                            " inhibition expectation (inhibited_by or inhibited) so that it runs on its own"
                        )
                    case.notes.append(note)
            elif inhibited != case.expected_inhibited:
                ok = False
                if case.expected_inhibited:
                    case.problems.append(
                        f"expected to be inhibited, but is not on {url} (state {case.state_per_am[url]}"
                        f" after {self.wait_active_timeout} s)"
                    )
                else:
                    case.problems.append(
                        f"expected not to be inhibited, but is inhibited on {url} by {self._inhibitors(url, by)}"
                    )
            elif inhibited and source_ids and (case.id, url) not in self.inhibited_by_own:
                ok = False
                case.problems.append(
                    f"inhibited on {url}, but within {self.wait_active_timeout} s only by alerts that are not its"
                    f" inhibited_by alerts: {self._inhibitors(url, by)}"
                )
        return ok

    def _inhibitors(self, url, inhibited_by):
        """Describe inhibiting alerts: smoke ids of this run, else the labels of the (foreign) alert."""
        foreign = [item for item in inhibited_by if item not in self.posted]
        labels = {}
        if foreign:
            client = next(client for client in self.clients if client.base_url == url)
            try:
                labels = {a.get("fingerprint"): a.get("labels") or {} for a in client.get_alerts()}
            except AlertmanagerError:
                labels = {}
        described = []
        for item in inhibited_by:
            if item in labels:
                pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(labels[item].items()))
                described.append(f"{item} {{{pairs}}}")
            else:
                described.append(item)
        return bracket(described)

    def resolve(self, alert_ids):
        """POST the alerts again with endsAt=now to every Alertmanager and wait until they are gone.

        Never raises: problems are collected in self.errors.
        """
        alert_ids = [i for i in alert_ids if i in self.posted and i not in self.resolve_attempted]
        if not alert_ids:
            return
        self.resolve_attempted.update(alert_ids)
        ends = rfc3339(utcnow())
        alerts = [dict(self.posted[alert_id], endsAt=ends) for alert_id in alert_ids]
        failed_post = False
        for client in self.active:
            try:
                self.call(client, "resolving alerts", client.post_alerts, alerts)
            except AlertmanagerError as exc:
                if exc.status == 400 and client.base_url in self.rejected:
                    continue
                failed_post = True
                self.errors.append(f"resolving {', '.join(alert_ids)} failed: {exc.msg}")
        if failed_post:
            return
        pending = [(alert_id, client) for alert_id in alert_ids for client in self.active]

        def all_gone():
            # A lost Alertmanager lost its alerts with it (they are kept in memory only).
            nonlocal pending
            still = []
            for alert_id, client in pending:
                listed = self.listed(client, alert_id) if client.base_url not in self.lost else LOST
                if listed is not LOST and listed:
                    still.append((alert_id, client))
            pending = still
            return not pending

        try:
            Poll(self.wait_active_timeout, self.poll_interval).until(all_gone)
        except AlertmanagerError as exc:
            self.errors.append(f"checking that the alerts were resolved failed: {exc.msg}")
            return
        for alert_id, client in pending:
            self.errors.append(
                f"alert {alert_id} is still listed on {client.base_url} {self.wait_active_timeout} s after it was"
                " resolved"
            )
        left = {alert_id for alert_id, _client in pending}
        self.resolved_ids.update(set(alert_ids) - left)

    def resolve_batch(self, batch):
        """Resolve the alerts of a batch of cases (sources included); a case that stays listed fails."""
        self.resolve([alert_id for case in batch for alert_id in case.alert_ids])
        for case in batch:
            case.resolved = all(alert_id in self.resolved_ids for alert_id in case.alert_ids)
            if not case.resolved:
                case.problems.append(f"{case.what} could not be resolved on every Alertmanager")

    def resolve_rest(self, cases):
        """Resolve whatever was posted and not resolved yet (after an error too)."""
        self.resolve(list(self.posted))
        for case in cases:
            posted = [alert_id for alert_id in case.alert_ids if alert_id in self.posted]
            if case.resolved is None and posted:
                case.resolved = all(alert_id in self.resolved_ids for alert_id in posted)
