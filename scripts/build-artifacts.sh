#!/usr/bin/env bash
# Test harness: the local artifact mirror the sandbox and molecule hosts
# install from, in the upstream layout (<org>/<repo>/releases/download/v<v>/
# with the upstream checksum file), because upstream downloads are
# unreachable from this sandbox:
# - Prometheus, promtool, Alertmanager, amtool, node_exporter and Jaeger: the
#   real programs at the versions the roles pin, built from their Go modules
#   by scripts/build-go.sh (cached in build/go);
# - Grafana: the project's STAND-IN (tests/standins/grafana, not Grafana).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${OBS_MIRROR_DIR:-$here/build/mirror}

"$here/scripts/build-go.sh"

# Grafana cannot be obtained here: package the project's Grafana STAND-IN
# in the layout of the official tarball, served like dl.grafana.com/oss/release/.
grafana_version=$(sed -nE 's/^grafana_version: "?([^"]+)"?$/\1/p' "$here/inventories/local/group_vars/all/main.yml")
stamp="$out/grafana/.built-$grafana_version-$(find "$here/tests/standins/grafana" -type f -not -path "*/__pycache__/*" | sort | xargs cat | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "$here/tests/standins/grafana/package.sh" "$grafana_version" "$out/grafana/oss/release" >/dev/null
  rm -f "$out"/grafana/.built-*
  touch "$stamp"
fi
echo "grafana stand-in $grafana_version -> $out/grafana/oss/release"
