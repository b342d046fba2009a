#!/usr/bin/env bash
# One-time (idempotent) setup of a fresh Debian machine for the demo and the
# tests: system packages, the Python toolchain in .venv, the collections, the
# Docker engine, the sandbox base images and the local artifact mirror.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# postgresql and redis-server: the unit tests start throwaway servers of them
# (the reference MDL API and its roles are tested against the real ones).
for pkg in debootstrap docker.io curl make python3-venv postgresql redis-server libpq5; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.requirements-$(sha256sum requirements.txt | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  rm -f .venv/.requirements-*
  touch "$stamp"
fi
.venv/bin/ansible-galaxy collection install -r requirements.yml >/dev/null

scripts/ensure-docker.sh
scripts/build-images.sh
scripts/build-artifacts.sh
scripts/build-wheelhouse.sh

# The sandbox CA and host certificates (inventories/local.pki; kept when they
# exist): the demo, the role renders of the unit tests and the sandbox's
# obs_tls_enabled read them. The molecule scenario makes its own in prepare.
ANSIBLE_CONFIG=$PWD/ansible.cfg ANSIBLE_VAULT_PASSWORD_FILE=$PWD/inventories/local/vault-password.txt \
  .venv/bin/ansible-playbook -i inventories/local playbooks/pki.yml >/dev/null
echo "sandbox PKI: inventories/local.pki"
