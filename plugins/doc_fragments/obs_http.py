"""Doc fragment: the connection options every module of the project has.

Argument spec: connection_argument_spec() in plugins/module_utils/http_client.py.
Outside a collection, Ansible finds the fragment through ansible.cfg
(doc_fragment_plugins = plugins/doc_fragments).
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url_username:
    description:
      - User for HTTP basic auth.
    type: str
  url_password:
    description:
      - Password of O(url_username).
    type: str
  validate_certs:
    description:
      - Validate the TLS certificates of HTTPS URLs.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the servers' certificates.
      - Mutually exclusive with O(ca_cert).
    type: path
  ca_cert:
    description:
      - The same CA as PEM text, for example a vault value, when there is no file of it where the module runs
        (a play delegated to the controller). Only this CA is trusted, as with O(ca_path).
      - Mutually exclusive with O(ca_path).
    type: str
  timeout:
    description:
      - Timeout in seconds of every single HTTP request.
    type: int
    default: 10
notes:
  - Only the Python standard library is needed on the host that runs the module (HTTP through
    C(ansible.module_utils.urls)).
"""
