#!/usr/bin/python
"""Ansible module: manage one Grafana data source by uid, idempotently, secrets included."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: obs_grafana_datasource
short_description: Manage one Grafana data source by uid, idempotently, secrets included
extends_documentation_fragment:
  - obs_http
  - obs_grafana
description:
  - Creates, updates or deletes one data source through the Grafana HTTP API, identified by its O(uid).
  - The non-secret fields (O(name), O(type), O(ds_url), O(access), O(is_default), O(basic_auth),
    O(basic_auth_user), O(json_data)) are compared with what Grafana has; the data source is only written when
    one of them differs or the secrets changed. These fields are the desired state; a value changed in the
    Grafana UI is set back, and C(jsonData) keys that are not in O(json_data) are removed. The fields the
    module does not manage (C(user), C(database), C(withCredentials)) are kept as they are.
  - Grafana never returns secrets (C(secureJsonData)), only which of them are set (C(secureJsonFields)). So
    that the module can tell whether the secrets changed, it stores a salted hash of them in the data source's
    C(jsonData) under the key C(ansibleSecureHash) (see O(secure_json_data)). The secrets are sent only when
    that hash differs from the one of the given values, or when Grafana reports one of the secret fields as
    not set; otherwise the run makes no write.
author:
  - Observability team
options:
  uid:
    description:
      - Uid of the data source (at most 40 letters, digits, C(-) and C(_)); dashboards refer to it.
    type: str
    required: true
  name:
    description:
      - Name of the data source (unique in the organisation). Required with O(state=present).
    type: str
  type:
    description:
      - Plugin id of the data source, for example V(prometheus), V(loki) or V(alertmanager). Required with
        O(state=present).
    type: str
  ds_url:
    description:
      - URL of the data source, for example V(http://prometheus:9090). Empty when not given.
    type: str
  access:
    description:
      - V(proxy) (Grafana's server calls the data source) or V(direct) (the browser does).
    type: str
    choices: [proxy, direct]
    default: proxy
  is_default:
    description:
      - Make it the organisation's default data source. Grafana keeps one default; making this one the default
        clears the flag on the other.
    type: bool
    default: false
  json_data:
    description:
      - The data source's C(jsonData) (plugin settings, for example C(httpMethod), C(timeInterval)), compared
        and written as a whole. The key C(ansibleSecureHash) is reserved for the module.
    type: dict
    default: {}
  secure_json_data:
    description:
      - Secret settings (C(secureJsonData)), for example C(httpHeaderValue1) or C(basicAuthPassword).
        Grafana stores them encrypted and never returns them.
      - The module stores C(sha256:) followed by the hex SHA-256 of the O(uid), a newline, and the secret
        values as compact JSON with sorted keys (O(basic_auth_password) included as C(basicAuthPassword)) in
        C(jsonData.ansibleSecureHash). Anyone who can read the data source's C(jsonData) can test guesses of
        the secrets against that hash, so use long random secrets.
      - Secret keys removed from this option are not removed from Grafana (Grafana keeps secrets that are not
        sent); the new hash is written, and the task reports a change once.
    type: dict
    default: {}
  basic_auth:
    description:
      - Use HTTP basic auth towards the data source.
    type: bool
    default: false
  basic_auth_user:
    description:
      - User for basic auth towards the data source. Empty when not given.
    type: str
  basic_auth_password:
    description:
      - Password for basic auth towards the data source, stored as the secret C(basicAuthPassword) (part of the
        hash, see O(secure_json_data)).
    type: str
  state:
    description:
      - V(present) creates or updates the data source, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Grafana is read but not written; the result says whether the data source would change.
  diff_mode:
    support: full
    description: Before and after of the compared fields; secret values are never shown, only which secrets are
      set and which would be replaced.
notes:
  - Data sources provisioned from files (C(provisioning/datasources), read-only) cannot be changed through the
    API; the module fails when one of them would have to change.
seealso:
  - name: Grafana data source HTTP API
    description: The endpoints the module uses.
    link: https://grafana.com/docs/grafana/latest/developers/http_api/data_source/
  - module: grafana_dashboards
"""

EXAMPLES = r"""
- name: Prometheus data source
  obs_grafana_datasource:
    url: "{{ grafana_url }}"
    token: "{{ grafana_service_account_token }}"
    uid: prometheus
    name: Prometheus
    type: prometheus
    ds_url: http://obs-mon-1:9090
    is_default: true
    json_data:
      httpMethod: POST
      timeInterval: 15s
  delegate_to: localhost
  run_once: true

- name: Loki behind an authenticating proxy (the secret is only sent when it changed)
  obs_grafana_datasource:
    url: https://grafana.example.internal
    url_username: admin
    url_password: "{{ grafana_admin_password }}"
    uid: loki
    name: Loki
    type: loki
    ds_url: https://loki.example.internal
    basic_auth: true
    basic_auth_user: grafana
    basic_auth_password: "{{ loki_basic_auth_password }}"
    json_data:
      httpHeaderName1: X-Scope-OrgID
    secure_json_data:
      httpHeaderValue1: "{{ loki_tenant }}"
    ca_path: /etc/ssl/certs/internal-ca.pem
  delegate_to: localhost
  run_once: true

- name: Remove the old data source
  obs_grafana_datasource:
    url: https://grafana.example.internal
    token: "{{ grafana_service_account_token }}"
    uid: old-prometheus
    state: absent
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
datasource:
  description:
    - The data source as Grafana has it after the run (in check mode, as it would be), without secrets
      (C(secureJsonFields) only says which secrets are set). Null when it is absent.
  returned: always
  type: dict
  sample:
    uid: loki
    name: Loki
    type: loki
    url: https://loki.example.internal
    access: proxy
    isDefault: false
    basicAuth: true
    basicAuthUser: grafana
    jsonData:
      httpHeaderName1: X-Scope-OrgID
      ansibleSecureHash: sha256:6c1f0e6ad4b2...
    secureJsonFields:
      basicAuthPassword: true
      httpHeaderValue1: true
    version: 3
secure_fields_sent:
  description: Names of the secret fields sent to Grafana in this run (would be sent, in check mode).
  returned: always
  type: list
  elements: str
  sample: [basicAuthPassword, httpHeaderValue1]
writes:
  description: Number of write requests sent to Grafana (0 or 1).
  returned: always
  type: int
  sample: 1
msg:
  description: What happened.
  returned: always
  type: str
  sample: data source loki updated
"""

import hashlib  # noqa: E402 - Ansible modules keep their imports below the documentation
import json  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.grafana_client import (  # noqa: E402
    GRAFANA_MUTUALLY_EXCLUSIVE,
    GRAFANA_REQUIRED_TOGETHER,
    UID_RE,
    GrafanaClient,
    GrafanaError,
    canonical,
    grafana_argument_spec,
    same,
)

HASH_KEY = "ansibleSecureHash"
# Fields Grafana returns that the module does not manage, kept on update (PUT replaces the data source).
KEPT_FIELDS = ("user", "database", "withCredentials")
# Never returned, even though Grafana answers them empty.
SECRET_FIELDS = ("password", "basicAuthPassword", "secureJsonData")
HIDDEN = "(hidden)"
REPLACED = "(hidden, replaced)"

ARGUMENT_SPEC = grafana_argument_spec(
    uid=dict(type="str", required=True),
    name=dict(type="str"),
    type=dict(type="str"),
    ds_url=dict(type="str"),
    access=dict(type="str", choices=["proxy", "direct"], default="proxy"),
    is_default=dict(type="bool", default=False),
    json_data=dict(type="dict", default={}),
    secure_json_data=dict(type="dict", default={}, no_log=True),
    basic_auth=dict(type="bool", default=False),
    basic_auth_user=dict(type="str"),
    basic_auth_password=dict(type="str", no_log=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def secure_hash(uid, secure):
    """sha256:<hex> of the uid, a newline and the secrets as compact sorted JSON."""
    text = uid + "\n" + json.dumps(secure, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def public(datasource):
    """The data source without any secret field."""
    if datasource is None:
        return None
    return {k: v for k, v in datasource.items() if k not in SECRET_FIELDS}


class DatasourceSync:
    def __init__(self, module):
        self.module = module
        params = module.params
        self.params = params
        self.uid = params["uid"]
        self.client = GrafanaClient.from_params(params)

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, changed=self.client.writes > 0, writes=self.client.writes, **extra)

    # ------------------------------------------------------------------ desired state
    def secrets(self):
        """{secure field: value} to set; fails on values that are not scalars."""
        params = self.params
        secure = {}
        for key, value in (params["secure_json_data"] or {}).items():
            if value is None or isinstance(value, (dict, list)):
                self.fail(
                    f"secure_json_data.{key} must be a string (got {'null' if value is None else 'a collection'})"
                )
            secure[str(key)] = value if isinstance(value, str) else json.dumps(value)
        if params["basic_auth_password"] is not None:
            if "basicAuthPassword" in secure:
                self.fail("give the basic auth password either as basic_auth_password or in secure_json_data, not both")
            secure["basicAuthPassword"] = params["basic_auth_password"]
        return secure

    def desired(self, secure):
        params = self.params
        json_data = dict(params["json_data"] or {})
        if HASH_KEY in json_data:
            self.fail(f"json_data.{HASH_KEY} is reserved: the module stores the hash of secure_json_data there")
        if secure:
            json_data[HASH_KEY] = secure_hash(self.uid, secure)
        return {
            "name": params["name"],
            "type": params["type"],
            "url": params["ds_url"] or "",
            "access": params["access"],
            "isDefault": params["is_default"],
            "basicAuth": params["basic_auth"],
            "basicAuthUser": params["basic_auth_user"] or "",
            "jsonData": json_data,
        }

    @staticmethod
    def current(existing):
        return {
            "name": existing.get("name"),
            "type": existing.get("type"),
            "url": existing.get("url") or "",
            "access": existing.get("access") or "proxy",
            "isDefault": bool(existing.get("isDefault")),
            "basicAuth": bool(existing.get("basicAuth")),
            "basicAuthUser": existing.get("basicAuthUser") or "",
            "jsonData": existing.get("jsonData") or {},
        }

    @staticmethod
    def set_secrets(existing):
        fields = (existing or {}).get("secureJsonFields") or {}
        return sorted(key for key, is_set in fields.items() if is_set)

    # ------------------------------------------------------------------ run
    def run(self):
        params = self.params
        if not UID_RE.match(self.uid):
            self.fail(f"invalid uid {self.uid!r}: at most 40 letters, digits, '-' and '_'")
        try:
            if params["state"] == "absent":
                self.absent()
            else:
                self.present()
        except GrafanaError as exc:
            self.fail(exc.msg, status=exc.status)

    def _check_name(self, name):
        other = self.client.get_datasource_by_name(name)
        if other is not None and other.get("uid") != self.uid:
            self.fail(
                f"Grafana at {self.client.base_url} already has a data source named {name!r} with uid"
                f" {other.get('uid')!r}; names are unique: give this one (uid {self.uid}) another name, or delete"
                " or rename the other"
            )

    def present(self):
        module = self.module
        secure = self.secrets()
        desired = self.desired(secure)
        existing = self.client.get_datasource(self.uid)
        set_before = self.set_secrets(existing)
        if existing is None:
            changed = True
            send_secure = bool(secure)
            self._check_name(desired["name"])
        else:
            current = self.current(existing)
            stored_hash = (existing.get("jsonData") or {}).get(HASH_KEY)
            missing = [key for key in secure if key not in set_before]
            send_secure = bool(secure) and (stored_hash != desired["jsonData"].get(HASH_KEY) or bool(missing))
            changed = send_secure or not same(current, desired)
            if changed and desired["name"] != current["name"]:
                self._check_name(desired["name"])
            if changed and existing.get("readOnly"):
                self.fail(
                    f"data source {self.uid} is read-only in Grafana (provisioned from a file in"
                    " provisioning/datasources); change it there, or set editable: true in that file"
                )
        sent = sorted(secure) if send_secure else []
        set_after = sorted(set(set_before) | set(sent))
        result = {"secure_fields_sent": sent}
        if module._diff:
            before = None if existing is None else self.current(existing)
            result["diff"] = self.diff(before, desired, set_before, set_after, sent)
        if not changed:
            module.exit_json(
                changed=False,
                writes=0,
                datasource=public(existing),
                msg=f"data source {self.uid} unchanged",
                **result,
            )
        body = dict(desired, uid=self.uid)
        if existing is not None:
            body = dict({k: existing[k] for k in KEPT_FIELDS if k in existing}, **body)
            body["version"] = existing.get("version")
        if send_secure:
            body["secureJsonData"] = secure
        action = "created" if existing is None else "updated"
        if module.check_mode:
            planned = dict(existing or {}, **body)
            planned.pop("secureJsonData", None)
            planned["secureJsonFields"] = {key: True for key in set_after}
            module.exit_json(
                changed=True,
                writes=0,
                datasource=public(planned),
                msg=f"data source {self.uid} would be {action}",
                **result,
            )
        if existing is None:
            saved = self.client.create_datasource(body)
        else:
            saved = self.client.update_datasource(self.uid, body)
        module.exit_json(
            changed=True,
            writes=self.client.writes,
            datasource=public(saved),
            msg=f"data source {self.uid} {action}" + (f" (secrets sent: {', '.join(sent)})" if sent else ""),
            **result,
        )

    def absent(self):
        module = self.module
        existing = self.client.get_datasource(self.uid)
        result = {"secure_fields_sent": [], "datasource": None}
        if module._diff:
            before = None if existing is None else self.current(existing)
            result["diff"] = self.diff(before, None, self.set_secrets(existing), [], [])
        if existing is None:
            module.exit_json(changed=False, writes=0, msg=f"data source {self.uid} is absent", **result)
        if existing.get("readOnly"):
            self.fail(
                f"data source {self.uid} is read-only in Grafana (provisioned from a file in"
                " provisioning/datasources); remove it there (deleteDatasources)"
            )
        if not module.check_mode:
            self.client.delete_datasource(self.uid)
        would = "would be " if module.check_mode else ""
        module.exit_json(
            changed=True, writes=self.client.writes, msg=f"data source {self.uid} {would}deleted", **result
        )

    def diff(self, before, after, set_before, set_after, sent):
        def doc(fields, secrets, replaced):
            if fields is None:
                return ""
            shown = dict(fields, uid=self.uid)
            shown["secureJsonData"] = {key: REPLACED if key in replaced else HIDDEN for key in secrets}
            return json.dumps(canonical(shown), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

        return {
            "before_header": f"grafana: data source {self.uid}" + ("" if before is not None else " (absent)"),
            "after_header": f"grafana: data source {self.uid}" + ("" if after is not None else " (absent)"),
            "before": doc(before, set_before, ()),
            "after": doc(after, set_after, sent),
        }


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=GRAFANA_MUTUALLY_EXCLUSIVE,
        required_together=GRAFANA_REQUIRED_TOGETHER,
        required_if=[("state", "present", ("name", "type"))],
    )
    DatasourceSync(module).run()


if __name__ == "__main__":
    main()
