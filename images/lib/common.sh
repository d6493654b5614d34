# Shared shell helpers for the image recipes (sourced, POSIX sh).
# The caller sets `prog` (its name for messages) and `images` (the images/ directory).

lib=$images/lib
# One fixed time for every recipe: file mtimes are clamped to it and images are `created` at it.
SOURCE_DATE_EPOCH=$(cat "$lib/source-date-epoch")
export SOURCE_DATE_EPOCH
# The host's locale may not exist in a chroot; C.UTF-8 always does.
LC_ALL=C.UTF-8
export LC_ALL
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() {
    echo "$prog: $*" >&2
    exit 1
}

# need TOOL PACKAGE: fail early, naming the Debian package that brings TOOL.
need() {
    command -v "$1" >/dev/null 2>&1 || die "needs $1: apt-get install $2"
}

# parse_args "$@": --out DIR (default images/build), --force (ignore the cache).
parse_args() {
    out=$images/build
    force=false
    while [ $# -gt 0 ]; do
        case $1 in
            --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift ;;
            --force) force=true ;;
            -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument $1 (see --help)" ;;
        esac
        shift
    done
    mkdir -p "$out/oci" "$out/stamps"
    out=$(cd "$out" && pwd)
}

# inputs_hash EXTRA PATH...: sha256 over EXTRA (versions, settings), the epoch, the python and
# zlib that write the layers, and every file under the PATHs, names included, so renaming,
# editing or adding a file changes it.
inputs_hash() {
    extra=$1
    shift
    {
        printf '%s\n' "$extra" "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
        python3 -c 'import sys, zlib; print("python", sys.version.split()[0], "zlib", zlib.ZLIB_RUNTIME_VERSION)'
        find "$@" -type f ! -name '*~' ! -name '*.swp' ! -path '*/__pycache__/*' | LC_ALL=C sort | while read -r f; do
            printf '%s %s\n' "$(sha256sum < "$f" | cut -c1-64)" "${f#"$images"/}"
        done
    } | sha256sum | cut -c1-64
}

# is_cached NAME HASH OUTPUT...: true when the last good build of NAME had these inputs and its
# outputs are all still there.
is_cached() {
    name=$1 hash=$2
    shift 2
    [ "$force" = false ] || return 1
    [ "$(head -1 "$out/stamps/$name" 2>/dev/null)" = "$hash" ] || return 1
    for o in "$@"; do [ -e "$o" ] || return 1; done
}

# lock NAME: one build of NAME per output dir at a time; a second one waits, then finds the
# first one's output in the cache. Held until the recipe exits (fd 9).
lock() {
    need flock util-linux
    exec 9> "$out/stamps/$1.lock"
    if ! flock -n 9; then
        echo "$prog: waiting for the other build of $1 in $out" >&2
        flock 9
    fi
}

# stamp NAME HASH IMAGE...: written last, so an interrupted build is never taken for a cached
# one. Line 1 is the inputs' hash, then the images the recipe made (build-all lists them).
stamp() {
    name=$1
    shift
    printf '%s\n' "$@" > "$out/stamps/$name.tmp"
    mv "$out/stamps/$name.tmp" "$out/stamps/$name"
}

# publish NEW DEST: put a finished directory in place of the old one; the old one stays until
# the new one is complete, so a failed build never leaves a half-written output.
publish() {
    rm -rf "$2.old"
    [ ! -e "$2" ] || mv "$2" "$2.old"
    mv "$1" "$2"
    rm -rf "$2.old"
}
