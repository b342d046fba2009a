#!/usr/bin/env bash
# Build a release asset of the Promtail STAND-IN (tests/standins/promtail; not
# Promtail) in the layout of Grafana Loki's GitHub releases.
#
#   tests/standins/promtail/package.sh VERSION OUTDIR
#
# Produces
#   OUTDIR/promtail-linux-ARCH.zip   one member, the executable promtail-linux-ARCH
#                                    (the stand-in with VERSION baked in, mode 0755
#                                    in the zip's external attributes, so unzip and
#                                    Ansible's unarchive keep it executable)
#   OUTDIR/SHA256SUMS                "<sha256>  promtail-linux-ARCH.zip", merged with
#                                    the lines already there (a Loki stand-in writes
#                                    its own assets' lines into the same file)
#
# ARCH is `dpkg --print-architecture` (amd64, arm64, ...). The zip is
# reproducible: same VERSION and sources give the same bytes and checksum.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/standins/package-args.sh
source "$here/../package-args.sh"
standin_args 3.6.0 arm "$@"

# The shared TLS code is inlined: the release is one executable file.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/../inline.sh" "$here/promtail_standin.py" >"$work/promtail_standin.py"
python3 - "$work/promtail_standin.py" "$version" "$arch" "$outdir" <<'PYEOF'
import hashlib
import sys
import zipfile
from pathlib import Path

source, version, arch, outdir = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
text = source.read_text(encoding="utf-8")
marker = 'BAKED_VERSION = ""'
if text.count(marker) != 1:
    sys.exit(f"package.sh: {source} must contain exactly one line {marker!r}")
program = text.replace(marker, f'BAKED_VERSION = "{version}"', 1).encode("utf-8")

name = f"promtail-linux-{arch}"
archive = outdir / f"{name}.zip"
tmp = archive.with_suffix(".zip.tmp")
info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)  # regular file, rwxr-xr-x
info.create_system = 3  # Unix, so unzip applies the mode
info.compress_type = zipfile.ZIP_DEFLATED
with zipfile.ZipFile(tmp, "w") as zf:
    zf.writestr(info, program, compresslevel=9)
tmp.replace(archive)

digest = hashlib.sha256(archive.read_bytes()).hexdigest()
sums = outdir / "SHA256SUMS"
lines = sums.read_text(encoding="utf-8").splitlines() if sums.exists() else []
kept = [ln for ln in lines if ln.strip() and ln.split()[-1].lstrip("*") != archive.name]
kept.append(f"{digest}  {archive.name}")
kept.sort(key=lambda ln: ln.split()[-1])
sums.write_text("\n".join(kept) + "\n", encoding="utf-8")
print(archive)
PYEOF
