#!/usr/bin/env bash
# Test harness: the local artifact mirror the sandbox and molecule hosts
# install from, in the upstream layout (<org>/<repo>/releases/download/v<v>/
# with the upstream checksum file), because upstream downloads are
# unreachable from this sandbox:
# - Prometheus, promtool, Alertmanager, amtool, node_exporter and Jaeger: the
#   real programs at the versions the roles pin, built from their Go modules
#   by scripts/build-go.sh (cached in build/go);
# - Grafana, Loki and Promtail: the project's STAND-INS (tests/standins/, not
#   the real programs).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${OBS_MIRROR_DIR:-$here/build/mirror}

"$here/scripts/build-go.sh"

# standin <name> <version> <release dir>: package a STAND-IN (tests/standins/<name>,
# not the real program) in the layout of the official archive, once per content.
standin() {
  local name=$1 version=$2 dir=$3 stamp
  # The content: the stand-in's own files and the shared ones beside them
  # (package-args.sh, inline.sh, dskit_tls.py).
  stamp="$dir/.built-$name-$( (find "$here/tests/standins/$name" -type f -not -path "*/__pycache__/*" | sort | xargs cat
    cat "$here"/tests/standins/*.sh "$here"/tests/standins/*.py) | sha256sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    mkdir -p "$dir"
    "$here/tests/standins/$name/package.sh" "$version" "$dir" >/dev/null
    rm -f "$dir"/.built-"$name"-*
    touch "$stamp"
  fi
  echo "$name stand-in $version -> $dir"
}
role_default() { sed -nE "s/^$2: \"?([^\"]+)\"?$/\1/p" "$here/roles/$1/defaults/main.yml"; }

# Grafana, Loki and Promtail cannot be obtained here (see the README): their
# stand-ins, served like dl.grafana.com/oss/release/ and Loki's GitHub releases.
grafana_version=$(sed -nE 's/^grafana_version: "?([^"]+)"?$/\1/p' "$here/inventories/local/group_vars/all/main.yml")
standin grafana "$grafana_version" "$out/grafana/oss/release"
loki_version=$(role_default loki loki_version)
standin loki "$loki_version" "$out/github/grafana/loki/releases/download/v$loki_version"
promtail_version=$(role_default promtail promtail_version)
standin promtail "$promtail_version" "$out/github/grafana/loki/releases/download/v$promtail_version"
