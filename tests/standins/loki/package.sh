#!/usr/bin/env bash
# Build a release of the Loki STAND-IN (tests/standins/loki; not Loki) in the
# layout of Loki's GitHub release assets.
#
#   tests/standins/loki/package.sh VERSION OUTDIR
#
# Produces
#   OUTDIR/loki-linux-ARCH.zip  one member, the executable loki-linux-ARCH (the
#                               stand-in with VERSION baked in, mode 0755 kept in
#                               the zip's Unix attributes for unzip/unarchive)
#   OUTDIR/SHA256SUMS           "<sha256>  loki-linux-ARCH.zip" lines, the format
#                               of Loki's release; lines of other assets already in
#                               the file (a promtail stand-in's) are kept
#
# ARCH is `dpkg --print-architecture` (amd64, arm64, ...). The zip is
# reproducible: the same VERSION and sources give the same bytes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/standins/package-args.sh
source "$here/../package-args.sh"
standin_args 3.6.0 arm "$@"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name="loki-linux-$arch"

# One executable with the shared TLS code inlined and the version baked in
# (the release has no VERSION file).
"$here/../inline.sh" "$here/loki_standin.py" >"$work/$name.py"
sed "s/^STANDIN_BAKED_VERSION = \"\".*/STANDIN_BAKED_VERSION = \"$version\"  # baked in by package.sh/" \
    "$work/$name.py" >"$work/$name"
if ! grep -q "^STANDIN_BAKED_VERSION = \"$version\"" "$work/$name"; then
    echo "package.sh: could not bake the version into $name" >&2
    exit 1
fi

python3 - "$work/$name" "$outdir/$name.zip" <<'PYEOF'
import sys
import zipfile

source, target = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo(source.rsplit("/", 1)[-1], date_time=(2024, 1, 1, 0, 0, 0))
info.create_system = 3  # Unix: unzip and Ansible's unarchive apply the mode below
info.external_attr = 0o100755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with open(source, "rb") as handle, zipfile.ZipFile(target + ".tmp", "w") as archive:
    archive.writestr(info, handle.read())
PYEOF
mv "$outdir/$name.zip.tmp" "$outdir/$name.zip"

# SHA256SUMS: replace this asset's line, keep the others, sorted by file name.
sums="$outdir/SHA256SUMS"
line="$(sha256sum "$outdir/$name.zip" | awk '{print $1}')  $name.zip"
{
    if [[ -f $sums ]]; then
        awk -v asset="$name.zip" '{ file = $2; sub(/^\*/, "", file) } NF && file != asset' "$sums"
    fi
    echo "$line"
} | LC_ALL=C sort -k2 >"$sums.tmp"
mv "$sums.tmp" "$sums"

echo "$outdir/$name.zip"
