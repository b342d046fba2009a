#!/usr/bin/env bash
# Test harness: build release archives in the exact upstream layout
# (<name>-<version>.linux-<arch>.tar.gz + sha256sums.txt under
# <org>/<repo>/releases/download/v<version>/) from Debian trixie's real binaries,
# because upstream downloads are unreachable from this sandbox. The roles'
# real archive install path then runs against real Prometheus, Alertmanager
# and node_exporter binaries served by a local mirror (scripts/sandbox.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${OBS_MIRROR_DIR:-$here/build/mirror}
tools=${OBS_TOOLS_DIR:-$here/build/tools}
image=obs-sandbox/debian:trixie
stamp="$out/.built-$( (cat "$0"; find "$here/tests/standins/grafana" -type f -not -path "*/__pycache__/*" | sort | xargs cat) | sha256sum | cut -c1-12)"

if [ -f "$stamp" ]; then
  echo "artifacts up to date in $out"
  exit 0
fi

work=$(mktemp -d /var/tmp/obs-artifacts.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs"
docker run --rm -v "$work/debs:/out" "$image" sh -ec '
  apt-get update -qq >/dev/null
  cd /out
  chown _apt /out 2>/dev/null || true
  apt-get download -qq prometheus promtool prometheus-alertmanager prometheus-node-exporter'

arch=$(dpkg --print-architecture)   # Debian and upstream agree for amd64/arm64

# pack <main deb> <upstream name> <github org> <extra debs, comma separated> <debian-binary[:upstream-name]...>
pack() {
  local deb=$1 name=$2 org=$3 extra=$4; shift 4
  local x="$work/x-$name" version dir rel d
  mkdir -p "$x"
  for d in "$deb" ${extra//,/ }; do dpkg-deb -x "$work"/debs/"$d"_*.deb "$x"; done
  version=$(dpkg-deb -f "$work"/debs/"$deb"_*.deb Version | sed -E 's/^[0-9]+://; s/[+~-].*$//')
  dir="$work/pkg/$name-$version.linux-$arch"
  mkdir -p "$dir"
  for b in "$@"; do install -m 0755 "$x/usr/bin/${b%%:*}" "$dir/${b##*:}"; done
  cp "$x/usr/share/doc/$deb/copyright" "$dir/LICENSE"
  echo "Built from Debian package $deb for the observability sandbox" >"$dir/NOTICE"
  if [ "$name" = alertmanager ]; then
    # Debian's alertmanager reads its notification templates from disk instead
    # of embedding them as upstream does; carry them so the archive is usable.
    mkdir -p "$dir/templates" "$tools/share/alertmanager"
    cp "$x"/usr/share/prometheus/alertmanager/*.tmpl "$dir/templates/"
    cp "$x"/usr/share/prometheus/alertmanager/*.tmpl "$tools/share/alertmanager/"
  fi
  rel="$out/github/$org/$name/releases/download/v$version"
  mkdir -p "$rel"
  tar -C "$work/pkg" -czf "$rel/$name-$version.linux-$arch.tar.gz" "$name-$version.linux-$arch"
  (cd "$rel" && sha256sum ./*.tar.gz | sed 's# \./# #' >sha256sums.txt)
  mkdir -p "$tools/bin"
  for b in "$@"; do install -m 0755 "$dir/${b##*:}" "$tools/bin/${b##*:}"; done
  echo "$name $version -> $rel"
}

rm -rf "$out/github"
pack prometheus prometheus prometheus promtool prometheus promtool
pack prometheus-alertmanager alertmanager prometheus "" prometheus-alertmanager:alertmanager amtool
pack prometheus-node-exporter node_exporter prometheus "" prometheus-node-exporter:node_exporter
# Grafana cannot be obtained here: package the project's Grafana STAND-IN
# (tests/standins/grafana, not Grafana) in the layout of the official tarball,
# served like dl.grafana.com/oss/release/.
grafana_version=12.3.0
"$here/tests/standins/grafana/package.sh" "$grafana_version" "$out/grafana/oss/release" >/dev/null
echo "grafana stand-in $grafana_version -> $out/grafana/oss/release"
rm -f "$out"/.built-*
touch "$stamp"
