"""The dashboard sources of the grafana_dashboards module, and the plan made of them.

A source is a JSON file or an inline model, either the bare dashboard model or
the export wrapper {"dashboard": {...}, "meta": {...}}. Every source is read,
parsed and validated before any request; every problem of every source is
collected, so one run reports them all (file, line and column for malformed
JSON) and nothing is written. The Plan says which dashboards are created,
updated, deleted or unchanged, and shows it as a diff.
"""

from __future__ import annotations

import json
import os

from ansible.module_utils.grafana_client import UID_RE, canonical

# Keys Grafana sets on every save (or the frontend bumps); never compared.
VOLATILE_KEYS = ("id", "version", "iteration")


class SourceError(Exception):
    pass


class Source:
    """One dashboard to provision: where it came from and its model."""

    def __init__(self, origin, model):
        self.origin = origin
        self.model = model
        self.uid = model.get("uid")
        self.title = model.get("title")


def normalize(model):
    """The dashboard model as compared: volatile keys dropped, numbers canonical (as Grafana stores them)."""
    return canonical({k: v for k, v in model.items() if k not in VOLATILE_KEYS})


def pretty(value):
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def unwrap(data, origin):
    """The dashboard model of a bare model or of the export wrapper {"dashboard": {...}}."""
    if not isinstance(data, dict):
        raise SourceError(
            f'{origin}: expected a JSON object (a dashboard model, or {{"dashboard": {{...}}}}),'
            f" found a JSON {type(data).__name__ if data is not None else 'null'}"
        )
    if "dashboard" in data and "title" not in data and "panels" not in data:
        model = data["dashboard"]
        if not isinstance(model, dict):
            raise SourceError(f'{origin}: "dashboard" must be a JSON object (the dashboard model)')
        return model
    return data


def read_json_file(path):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def source_files(path):
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
        files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
        if not files:
            raise SourceError(f"{path}: the directory holds no *.json file")
        return files
    if os.path.exists(path):
        return [path]
    raise SourceError(f"{path}: no such file or directory")


def check_model(source, need_title):
    problems = []
    uid = source.uid
    if uid is None or uid == "":
        problems.append(f'{source.origin}: missing uid (the module identifies dashboards by their "uid")')
    elif not isinstance(uid, str) or not UID_RE.match(uid):
        problems.append(f"{source.origin}: invalid uid {uid!r} (at most 40 characters of letters, digits, '-' and '_')")
    if need_title and (not isinstance(source.title, str) or not source.title.strip()):
        problems.append(f'{source.origin}: missing title (Grafana needs a non-empty "title")')
    return problems


def _parse(origin, data):
    """Source of one file (data None) or inline model."""
    return Source(origin, unwrap(read_json_file(origin) if data is None else data, origin))


def _duplicates(sources, need_title):
    problems = []
    by_uid = {}
    by_title = {}
    for source in sources:
        by_uid.setdefault(source.uid, []).append(source)
        if need_title:
            by_title.setdefault(source.title.strip().lower(), []).append(source)
    for uid, same_uid in by_uid.items():
        if len(same_uid) > 1:
            problems.append(f"duplicate uid {uid!r} in {', '.join(s.origin for s in same_uid)}")
    for same_title in by_title.values():
        if len(same_title) > 1 and len({s.uid for s in same_title}) > 1:
            problems.append(
                f"title {same_title[0].title!r} is used by "
                + ", ".join(f"{s.origin} (uid {s.uid})" for s in same_title)
                + "; Grafana needs unique titles within a folder"
            )
    return problems


def load_sources(path, dashboards, need_title):
    """Every source, parsed and validated; raises SourceError listing all problems."""
    problems = []
    sources = []
    if path is not None:
        items = [(file, None) for file in source_files(path)]
    else:
        items = [(f"dashboards[{index}]", model) for index, model in enumerate(dashboards or [])]
        if not items:
            raise SourceError("dashboards is empty: give at least one dashboard")
    for origin, data in items:
        try:
            source = _parse(origin, data)
        except SourceError as exc:
            problems.append(str(exc))
            continue
        found = check_model(source, need_title)
        problems += found
        if not found:
            sources.append(source)
    problems += _duplicates(sources, need_title)
    if problems:
        count = len(problems)
        raise SourceError(
            f"{count} problem{'s' if count > 1 else ''} in the dashboard sources, nothing was written:\n- "
            + "\n- ".join(problems)
        )
    return sources


# --------------------------------------------------------------------------- plan
class Plan:
    def __init__(self):
        self.created = []  # Source
        self.updated = []  # (Source, existing)
        self.unchanged = []  # Source
        self.deleted = []  # (uid, title, existing or None)
        self.delete_first = set()  # uids deleted before saving (their title is reused)

    def lists(self):
        """The uids of the result's created, updated, deleted and unchanged lists."""
        return {
            "created": [s.uid for s in self.created],
            "updated": [s.uid for s, _existing in self.updated],
            "deleted": [uid for uid, _title, _existing in self.deleted],
            "unchanged": [s.uid for s in self.unchanged],
        }

    def diff(self, folder):
        """--diff entries: normalised {"folderUid", "dashboard"} before and after; ``folder`` is the target."""

        def doc(folder_uid, model):
            label = f"(new folder {folder['title']!r})" if folder_uid is None else folder_uid
            return pretty({"folderUid": label, "dashboard": normalize(model)})

        def entry(before_header, after_header, before, after):
            return {"before_header": before_header, "after_header": after_header, "before": before, "after": after}

        def in_grafana(existing):
            return doc((existing.get("meta") or {}).get("folderUid") or "", existing["dashboard"])

        target = folder["uid"]
        diffs = [
            entry(f"grafana: dashboard {s.uid} (absent)", s.origin, "", doc(target, s.model)) for s in self.created
        ]
        for source, existing in self.updated:
            version = (existing.get("meta") or {}).get("version", "?")
            header = f"grafana: dashboard {source.uid} (version {version})"
            diffs.append(entry(header, source.origin, in_grafana(existing), doc(target, source.model)))
        for uid, title, existing in self.deleted:
            before = in_grafana(existing) if existing is not None else pretty({"uid": uid, "title": title})
            diffs.append(entry(f"grafana: dashboard {uid}", f"grafana: dashboard {uid} (deleted)", before, ""))
        return diffs
