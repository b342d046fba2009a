# Sourced by the stand-ins' package.sh: parses VERSION OUTDIR and sets
# version, outdir (absolute, created) and arch (the release's name for it).
#   standin_args EXAMPLE_VERSION ARM32_NAME "$@"
# ARM32_NAME is what the upstream release calls 32-bit ARM (armhf, arm).
# shellcheck shell=bash disable=SC2034  # version, outdir and arch are set for the caller
standin_args() {
    local example=$1 arm32=$2
    shift 2
    if [[ $# -ne 2 ]]; then
        echo "usage: $0 VERSION OUTDIR" >&2
        exit 2
    fi
    version=${1#v}
    if [[ ! $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]]; then
        echo "package.sh: VERSION must look like $example, got '$1'" >&2
        exit 2
    fi
    mkdir -p "$2"
    outdir=$(cd "$2" && pwd)
    if command -v dpkg >/dev/null 2>&1; then
        arch=$(dpkg --print-architecture)
    else
        case $(uname -m) in
            x86_64) arch=amd64 ;;
            aarch64) arch=arm64 ;;
            armv7l) arch=$arm32 ;;
            *) arch=$(uname -m) ;;
        esac
    fi
}
