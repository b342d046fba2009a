#!/usr/bin/env bash
# Test harness: build the real programs the roles pin from their upstream Go
# modules (through the Go module proxy) and package them in the exact layout
# of the upstream release archives, checksum file included, under
# build/mirror/github/<org>/<repo>/releases/download/v<version>/.
#
#   scripts/build-go.sh [component ...]     default: every component below
#
# The versions come from the roles' defaults (roles/<component>/defaults), so
# the archives are the shipped defaults. Each build uses a throwaway wrapper
# module whose go.mod is generated here, at build time, from the go.mod the
# proxy returns for the pinned version (`go mod download -json`): its
# non-local replace and exclude directives are carried over with
# `go mod edit`; nothing upstream is copied into this repository.
#
# Binaries are cached in build/go/bin/<component>-<version>/ (the compile
# cache in build/go/gocache, downloaded modules in Go's module cache), so a
# second run takes under a second; a cold run takes many minutes on two cores. OBS_UPSTREAM_DOWNLOAD=1 first tries the official
# release archive (the fast path where github.com is reachable); it is off by
# default because the sandbox may contact no outside address.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${OBS_MIRROR_DIR:-$here/build/mirror}
tools=${OBS_TOOLS_DIR:-$here/build/tools}
cache=${OBS_GO_CACHE:-$here/build/go}
# The machine's Go toolchain (Go 1.26 under /usr/local/go on these machines).
export PATH=$PATH:/usr/local/go/bin
if ! command -v go >/dev/null; then
  echo "build-go: no go command on PATH or in /usr/local/go/bin; install Go 1.26 or newer" >&2
  exit 1
fi
arch=$(go env GOARCH)
# Downloaded modules go to the machine's usual Go module cache (shared by every
# clone, checksummed by go.sum); compiled packages and binaries stay in build/.
export GOMODCACHE=${OBS_GOMODCACHE:-$(GOFLAGS= go env GOMODCACHE)} GOCACHE=$cache/gocache GOPATH=$cache/path
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0


# default_version <role> <variable>: the role default, quoted YAML scalar.
default_version() {
  sed -nE "s/^$2: \"?([^\"]+)\"?$/\1/p" "$here/roles/$1/defaults/main.yml"
}

log() { printf '[build-go %(%H:%M:%S)T] %s\n' -1 "$*"; }

# wrapper <dir> <module> <module version> <package...>: a module that requires
# <module>@<version> with upstream's replace/exclude directives.
wrapper() {
  local dir=$1 module=$2 modver=$3; shift 3
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    go mod init obs.invalid/build/"$(basename "$dir")" >/dev/null 2>&1
    local upstream
    upstream=$(go mod download -json "$module@$modver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    go mod edit -require="$module@$modver"
    # Directives of the upstream go.mod, as `go mod edit` arguments; a local
    # (path) replace cannot be carried and is reported.
    go mod edit -json "$upstream" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
for r in mod.get("Replace") or []:
    old, new = r["Old"], r["New"]
    if not new.get("Version"):
        sys.stderr.write("upstream replaces %s with the local path %s; not carried\n" % (old["Path"], new["Path"]))
        continue
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    print("-replace=%s=%s@%s" % (lhs, new["Path"], new["Version"]))
for e in mod.get("Exclude") or []:
    print("-exclude=%s@%s" % (e["Path"], e["Version"]))
' | xargs -r go mod edit
    {
      echo "//go:build tools"
      echo "package tools"
      for p in "$@"; do echo "import _ \"$p\""; done
    } >tools.go
    go mod tidy 2>&1 | grep -v '^go: downloading' || true
  )
}

# build <component> <module> <module version> <version> <ldflags> <pkg:binary...>
build() {
  local name=$1 module=$2 modver=$3 version=$4 ldflags=$5; shift 5
  local bin="$cache/bin/$name-$version" pkgs=() b
  for b in "$@"; do pkgs+=("${b%%:*}"); done
  if [ -f "$bin/.complete" ]; then
    log "$name $version: cached in $bin"
    return
  fi
  local start=$SECONDS dir="$cache/work/$name-$version"
  log "$name $version: resolving $module@$modver (a cold build takes minutes)"
  wrapper "$dir" "$module" "$modver" "${pkgs[@]}"
  mkdir -p "$bin"
  for b in "$@"; do
    log "$name $version: go build ${b%%:*}"
    (cd "$dir" && go build -trimpath -tags netgo,osusergo -ldflags "$ldflags" -o "$bin/${b##*:}" "${b%%:*}")
  done
  # Upstream's LICENSE/NOTICE and sample config, from the module itself.
  local src
  src=$(cd "$dir" && go list -m -f '{{.Dir}}' "$module")
  for f in LICENSE NOTICE documentation/examples/prometheus.yml examples/ha/alertmanager.yml doc/examples/simple.yml; do
    [ -f "$src/$f" ] && cp "$src/$f" "$bin/"
  done
  chmod -R u+w "$bin"
  touch "$bin/.complete"
  rm -rf "$dir"
  log "$name $version: built in $((SECONDS - start)) s"
}

# Prometheus projects: <name>-<v>.linux-<arch>.tar.gz + sha256sums.txt.
pack_prometheus() {
  local name=$1 version=$2 config=${3:-}; shift 3
  local bin="$cache/bin/$name-$version" work rel dir b
  rel="$out/github/prometheus/$name/releases/download/v$version"
  if [ "$rel/$name-$version.linux-$arch.tar.gz" -nt "$bin/.complete" ]; then return; fi
  work=$(mktemp -d) && dir="$work/$name-$version.linux-$arch"
  mkdir -p "$dir"
  for b in "$@"; do install -m 0755 "$bin/$b" "$dir/$b"; done
  cp "$bin/LICENSE" "$dir/" && { [ ! -f "$bin/NOTICE" ] || cp "$bin/NOTICE" "$dir/"; }
  [ -z "$config" ] || cp "$bin/$config" "$dir/$name.yml"
  rm -rf "$rel" && mkdir -p "$rel"
  tar -C "$work" -czf "$rel/$name-$version.linux-$arch.tar.gz" "$name-$version.linux-$arch"
  (cd "$rel" && sha256sum ./*.tar.gz | sed 's# \./# #' >sha256sums.txt)
  rm -rf "$work"
  log "$name $version -> $rel"
}

# Jaeger v2: jaeger-<v>-linux-<arch>.tar.gz + jaeger-<v>.sha256sum.txt
# (shasum -b format). Upstream's archive also carries example-hotrod, a demo
# application the roles do not use; it is left out.
pack_jaeger() {
  local version=$1 bin="$cache/bin/jaeger-$1" work dir
  local rel="$out/github/jaegertracing/jaeger/releases/download/v$version"
  if [ "$rel/jaeger-$version-linux-$arch.tar.gz" -nt "$bin/.complete" ]; then return; fi
  work=$(mktemp -d) && dir="$work/jaeger-$version-linux-$arch"
  mkdir -p "$dir"
  install -m 0755 "$bin/jaeger" "$dir/jaeger"
  rm -rf "$rel" && mkdir -p "$rel"
  tar -C "$work" --sort=name -czf "$rel/jaeger-$version-linux-$arch.tar.gz" "jaeger-$version-linux-$arch"
  (cd "$rel" && sha256sum -b "jaeger-$version-linux-$arch.tar.gz" >"jaeger-$version.sha256sum.txt")
  rm -rf "$work"
  log "jaeger $version -> $rel"
}

# upstream_archive <url> <dest dir> <checksum file> <component> <version>: the
# fast path, opt-in (see the header); its binaries also fill the cache.
upstream_archive() {
  [ "${OBS_UPSTREAM_DOWNLOAD:-0}" = 1 ] || return 1
  local bin="$cache/bin/$4-$5"
  mkdir -p "$2" "$bin"
  curl -fsSL --max-time 120 -o "$2/$(basename "$1")" "$1" &&
    curl -fsSL --max-time 30 -o "$2/$3" "$(dirname "$1")/$3" &&
    (cd "$2" && grep " \*\?$(basename "$1")\$" "$3" | sha256sum -c -) &&
    tar -xzf "$2/$(basename "$1")" -C "$bin" --strip-components=1 &&
    touch "$bin/.complete" && log "$4 $5: official archive from $(dirname "$1")"
}

promver() { # <version>: Prometheus' common/version link flags
  local v=github.com/prometheus/common/version
  echo "-s -w -X $v.Version=$1 -X $v.Revision=go-module -X $v.Branch=HEAD -X $v.BuildUser=obs-build-go -X $v.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
}

component() {
  local c=$1 v rel gh=https://github.com
  case "$c" in
    jaeger)
      v=$(default_version jaeger jaeger_version)
      rel=jaegertracing/jaeger/releases/download/v$v
      if ! upstream_archive "$gh/$rel/jaeger-$v-linux-$arch.tar.gz" "$out/github/$rel" "jaeger-$v.sha256sum.txt" jaeger "$v"; then
        # Jaeger's module has no /v2 suffix: every v2.N release carries the
        # v1.(N+63) tag on the same commit (v2.13.0 = v1.76.0, the last pair).
        local minor=${v#2.} vi=github.com/jaegertracing/jaeger/internal/version
        minor=${minor%%.*}
        build jaeger github.com/jaegertracing/jaeger "v1.$((minor + 63)).${v##*.}" "$v" \
          "-s -w -X $vi.latestVersion=v$v -X $vi.commitSHA=go-module-v1.$((minor + 63)).${v##*.} -X $vi.date=$(date -u +%FT%TZ)" \
          github.com/jaegertracing/jaeger/cmd/jaeger:jaeger
        pack_jaeger "$v"
      fi
      ;;
    prometheus)
      v=$(default_version prometheus prometheus_version)
      rel=prometheus/prometheus/releases/download/v$v
      if ! upstream_archive "$gh/$rel/prometheus-$v.linux-$arch.tar.gz" "$out/github/$rel" sha256sums.txt prometheus "$v"; then
        # Prometheus 3.x modules are tagged v0.3MM.P (3.5.0 = v0.305.0). Built
        # without the npm-built web UI (builtinassets): the API is complete.
        local major=${v%%.*} rest=${v#*.}
        build prometheus github.com/prometheus/prometheus "v0.$((major * 100 + ${rest%%.*})).${v##*.}" "$v" \
          "$(promver "$v")" \
          github.com/prometheus/prometheus/cmd/prometheus:prometheus github.com/prometheus/prometheus/cmd/promtool:promtool
        pack_prometheus prometheus "$v" prometheus.yml prometheus promtool
      fi
      ;;
    alertmanager)
      v=$(default_version alertmanager alertmanager_version)
      rel=prometheus/alertmanager/releases/download/v$v
      if ! upstream_archive "$gh/$rel/alertmanager-$v.linux-$arch.tar.gz" "$out/github/$rel" sha256sums.txt alertmanager "$v"; then
        build alertmanager github.com/prometheus/alertmanager "v$v" "$v" "$(promver "$v")" \
          github.com/prometheus/alertmanager/cmd/alertmanager:alertmanager github.com/prometheus/alertmanager/cmd/amtool:amtool
        pack_prometheus alertmanager "$v" simple.yml alertmanager amtool
      fi
      ;;
    node_exporter)
      v=$(default_version node_exporter node_exporter_version)
      rel=prometheus/node_exporter/releases/download/v$v
      if ! upstream_archive "$gh/$rel/node_exporter-$v.linux-$arch.tar.gz" "$out/github/$rel" sha256sums.txt node_exporter "$v"; then
        build node_exporter github.com/prometheus/node_exporter "v$v" "$v" "$(promver "$v")" \
          github.com/prometheus/node_exporter:node_exporter
        pack_prometheus node_exporter "$v" "" node_exporter
      fi
      ;;
    *) echo "unknown component $c (jaeger, prometheus, alertmanager, node_exporter)" >&2; return 2 ;;
  esac
  # The controller-side test tools (promtool, amtool, alertmanager, jaeger)
  # are the same pinned builds.
  mkdir -p "$tools/bin"
  local f
  for f in promtool amtool alertmanager prometheus jaeger; do
    if [ -x "$cache/bin/$c-$v/$f" ]; then install -m 0755 "$cache/bin/$c-$v/$f" "$tools/bin/$f"; fi
  done
}

for c in "${@:-node_exporter alertmanager jaeger prometheus}"; do
  for one in $c; do component "$one"; done
done
