"""Doc fragment: the options that say which Grafana to talk to, and how to sign in.

Used with obs_http. Argument spec: grafana_argument_spec() in
plugins/module_utils/grafana_client.py.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of Grafana, for example V(https://grafana.example.internal). A sub-path (C(root_url) with
        C(serve_from_sub_path)) is part of it.
    type: str
    required: true
  token:
    description:
      - Service-account token, sent in the C(Authorization) header as C(Bearer <token>). Dashboards and folders
        need the Editor role (Admin to create folders when folder creation is restricted), data sources the
        Admin role.
      - Mutually exclusive with O(url_username) and O(url_password).
    type: str
  org_id:
    description:
      - Organisation to work in (header C(X-Grafana-Org-Id)); only for basic auth users that belong to several
        organisations. A token always works in its own organisation.
    type: int
"""
