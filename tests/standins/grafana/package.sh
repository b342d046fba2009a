#!/usr/bin/env bash
# Build a release archive of the Grafana STAND-IN (tests/standins/grafana;
# not Grafana) in the layout of Grafana's official Linux tarball, plus its
# .sha256 file and two small test plugin zips.
#
#   tests/standins/grafana/package.sh VERSION OUTDIR
#
# Produces
#   OUTDIR/grafana-VERSION.linux-ARCH.tar.gz         top directory grafana-vVERSION/
#   OUTDIR/grafana-VERSION.linux-ARCH.tar.gz.sha256  "<hex sha256>\n", the format of
#                                                     dl.grafana.com (digest only, no file name)
#   OUTDIR/plugins/mdl-test-panel-1.0.0.zip           unsigned test panel plugin
#   OUTDIR/plugins/mdl-test-panel-1.1.0.zip
#
# ARCH is `dpkg --print-architecture` (amd64, arm64, ...). The archive is
# reproducible: same VERSION and sources give the same bytes and checksum.
#
# Archive layout (as Grafana's grafana-vX.Y.Z/ tree, reduced):
#   bin/grafana            the stand-in (python3, mode 0755)
#   bin/grafana-server     compatibility wrapper: exec grafana server "$@"
#   bin/grafana-cli        compatibility wrapper: exec grafana cli "$@"
#   conf/defaults.ini      short stand-in defaults (keys the stand-in reads)
#   conf/sample.ini
#   conf/provisioning/{dashboards,datasources,plugins,alerting}/sample.yaml (comments only)
#   public/standin.txt
#   LICENSE  README.md  VERSION
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/standins/package-args.sh
source "$here/../package-args.sh"
standin_args 11.3.0 armhf "$@"

mkdir -p "$outdir/plugins"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
top="grafana-v$version"
root="$work/$top"
mkdir -p "$root/bin" "$root/conf/provisioning" "$root/public"

install -m 0755 "$here/grafana_standin.py" "$root/bin/grafana"
for tool in server cli; do
    cat >"$root/bin/grafana-$tool" <<EOF
#!/bin/sh
# Compatibility wrapper of the Grafana stand-in (tests/standins/grafana; not Grafana),
# like Grafana's deprecated grafana-$tool program: runs "grafana $tool".
echo "Deprecation warning: The standalone 'grafana-$tool' program is deprecated and will be removed in the future. Please update all uses of 'grafana-$tool' to 'grafana $tool'" >&2
here=\$(dirname "\$(readlink -f "\$0")")
exec "\$here/grafana" $tool "\$@"
EOF
    chmod 0755 "$root/bin/grafana-$tool"
done

install -m 0644 "$here/conf/defaults.ini" "$here/conf/sample.ini" "$root/conf/"
for kind in dashboards datasources plugins alerting; do
    mkdir -p "$root/conf/provisioning/$kind"
    cat >"$root/conf/provisioning/$kind/sample.yaml" <<EOF
# Sample $kind provisioning file of the Grafana stand-in (tests/standins/grafana; not Grafana).
# The stand-in reads provisioning files as JSON-compatible YAML: one JSON document,
# whole-line comments allowed. This file holds only comments and is ignored.
EOF
done
printf '%s\n' "Static files of the Grafana stand-in $version (tests/standins/grafana; not Grafana)." >"$root/public/standin.txt"
printf '%s\n' "$version" >"$root/VERSION"
cat >"$root/README.md" <<EOF
# Grafana stand-in $version

This archive is a **test stand-in**, not Grafana. It is built by
tests/standins/grafana/package.sh of this project in the layout of Grafana's
official Linux release archive (grafana-$version.linux-$arch.tar.gz with top
directory $top/), so that the project's install path can be tested on machines
where Grafana cannot be obtained. bin/grafana is a Python 3 program that
implements the small part of Grafana's CLI and HTTP API the project uses; see
the docstring of bin/grafana for what it does and does not do.
EOF
cat >"$root/LICENSE" <<EOF
The Grafana stand-in (tests/standins/grafana) is part of this project's test
suite and is distributed under the project's terms. It contains no Grafana
code. Grafana is a trademark of Grafana Labs; this archive is not Grafana.
EOF

# Reproducible archive: fixed order, owner and mtime; gzip without name/time.
find "$root" -exec touch -h -d "@1704067200" {} +
archive="$outdir/grafana-$version.linux-$arch.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@1704067200" --format=gnu \
    -C "$work" -cf - "$top" | gzip -n -9 >"$archive.tmp"
mv "$archive.tmp" "$archive"
# dl.grafana.com's .sha256 files hold the hex digest and a newline, nothing else.
sha256sum "$archive" | awk '{print $1}' >"$archive.sha256"

# Test plugin zips (deterministic), top directory holding plugin.json.
python3 - "$outdir/plugins" <<'PYEOF'
import json
import sys
import zipfile
from pathlib import Path

out = Path(sys.argv[1])
for version in ("1.0.0", "1.1.0"):
    plugin = {
        "type": "panel",
        "name": "MDL test panel (Grafana stand-in fixture)",
        "id": "mdl-test-panel",
        "info": {
            "description": "Test plugin for the Grafana stand-in (tests/standins/grafana; not Grafana)",
            "author": {"name": "project test suite"},
            "version": version,
            "updated": "2024-01-01",
        },
        "dependencies": {"grafanaDependency": ">=10.0.0", "plugins": []},
    }
    files = {
        "mdl-test-panel/plugin.json": json.dumps(plugin, indent=2) + "\n",
        "mdl-test-panel/module.js": f"/* mdl-test-panel {version}: stand-in test plugin */\n",
        "mdl-test-panel/README.md": f"# mdl-test-panel {version}\n\nTest fixture of the Grafana stand-in.\n",
    }
    target = out / f"mdl-test-panel-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        dir_info = zipfile.ZipInfo("mdl-test-panel/", date_time=(2024, 1, 1, 0, 0, 0))
        dir_info.external_attr = (0o40755 << 16) | 0x10
        zf.writestr(dir_info, "")
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
PYEOF

echo "$archive"
