#!/usr/bin/env bash
# The reference MDL API's wheelhouse (build/wheelhouse) and a local venv of it
# (build/mdl-api/venv) for the unit tests, the load generator and the benches.
# The wheels cover the Pythons of Debian 12 (3.11) and 13 (3.13); the role
# copies them to the application hosts and installs with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
req=roles/mdl_api/files/requirements.txt
out=build/wheelhouse
stamp="$out/.stamp-$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  rm -rf "$out"
  mkdir -p "$out"
  for py in 3.11 3.13; do
    echo "wheelhouse: downloading the MDL API's wheels for Python $py"
    pip_args=(download -q -d "$out" --only-binary=:all: --implementation cp --python-version "$py")
    for plat in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64; do pip_args+=(--platform "$plat"); done
    .venv/bin/pip "${pip_args[@]}" -r "$req"
  done
  touch "$stamp"
fi
venv=build/mdl-api/venv
vstamp="$venv/.stamp-$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$vstamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-index --find-links "$out" -r "$req"
  touch "$vstamp"
fi
echo "wheelhouse: $(ls "$out"/*.whl | wc -l) wheels in $out; app venv $venv"
