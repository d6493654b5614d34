# Shared by scripts/bench-*: the check before a benchmark, its re-run in private namespaces,
# and the timing helpers. The sourcing script sets $here (the repo) and, inside, $work.

# bench_prepare NAME TOOL...: root, the tools, the binary and the busybox rootfs.
bench_prepare() {
    local name=$1 tool
    shift
    [ "$(id -u)" = 0 ] || { echo "$name: needs root" >&2; exit 1; }
    for tool in unshare "$@"; do command -v "$tool" >/dev/null || { echo "$name: install $tool" >&2; exit 1; }; done
    [ -x "$here/target/release/shibafu" ] || (cd "$here" && cargo build --release)
    [ -f "$here/images/build/busybox.tar" ] || "$here/images/busybox/build" >/dev/null
}

# bench_reenter ARGS...: runs the script again in private mount, net and pid namespaces, so
# everything it makes goes with them.
bench_reenter() {
    exec env SHIBAFU_BENCH_INNER=1 unshare --mount --net --pid --fork --kill-child --mount-proc --propagation private "$0" "$@"
}

now() { date +%s%N; }
# time_one NAME COMMAND...: microseconds into $work/t.NAME
time_one() {
    local s e
    s=$(now); "${@:2}" >/dev/null 2>&1; e=$(now)
    echo $(( (e - s) / 1000 )) >> "$work/t.$1"
}
# time_cpu NAME COMMAND...: as time_one, and the command's own CPU time (user + system, its
# children included) in microseconds into $work/t.NAME-cpu
time_cpu() {
    local s e TIMEFORMAT='%U %S' cpu
    s=$(now); cpu=$( { time "${@:2}" >/dev/null 2>&1; } 2>&1 ); e=$(now)
    echo $(( (e - s) / 1000 )) >> "$work/t.$1"
    awk '{printf "%d\n", ($1 + $2) * 1e6}' <<< "$cpu" >> "$work/t.$1-cpu"
}
median() { sort -n "$work/t.$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v u="$1" 'BEGIN {printf "%.2f ms", u/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
