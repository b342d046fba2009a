#!/usr/bin/env bash
# Inline the stand-ins' shared TLS code (tests/standins/dskit_tls.py) into one
# stand-in source, so its release stays one executable file as upstream's is:
#
#   tests/standins/inline.sh SOURCE.py > EXECUTABLE
#
# The lines between "# >>> dskit_tls" and "# <<< dskit_tls" (the import the
# source uses when run from the tree) become the module's code; its
# `from __future__` line is dropped (the source has its own at the top).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source=$1
if [[ $(grep -c '^# >>> dskit_tls' "$source") != 1 || $(grep -c '^# <<< dskit_tls' "$source") != 1 ]]; then
    echo "inline.sh: $source needs exactly one '# >>> dskit_tls' ... '# <<< dskit_tls' block" >&2
    exit 1
fi
awk -v module="$here/dskit_tls.py" '
    /^# >>> dskit_tls/ {
        print "# >>> dskit_tls (inlined from tests/standins/dskit_tls.py by package.sh)"
        while ((getline line < module) > 0) if (line !~ /^from __future__ /) print line
        skip = 1; next
    }
    /^# <<< dskit_tls/ { skip = 0 }
    !skip
' "$source"
