# The runtime half of scripts/bench-start, run inside the appliance (scripts/bench-start-vm
# sends it over the serial console): there cgroup v2 has its controllers, so shibafu, runc
# and crun all make a cgroup, with the same config.json on the same busybox bundle. Also
# `shibafu run --rm busybox true` through the whole engine. Prints medians and ratios.
N=${1:-20}
work=$(mktemp -d)
mkdir -p "$work/bundle/rootfs"
shibafu export busybox | tar -C "$work/bundle/rootfs" -xf -
(cd "$work/bundle" && shibafu runtime spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' "$work/bundle/config.json"
now() { date +%s%N; }
time_one() { local s e; s=$(now); "${@:2}" >/dev/null 2>&1 || echo "FAILED: ${*:2}"; e=$(now); echo $(( (e - s) / 1000 )) >> "$work/t.$1"; }
median() { sort -n "$work/t.$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v u="$1" 'BEGIN {printf "%.2f ms", u/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# Every runtime makes a cgroup: each container shows its own (the spec has no cgroup namespace).
mkdir -p "$work/check" && cp -a "$work/bundle/rootfs" "$work/check/rootfs"
sed 's/"true"$/"cat", "\/proc\/self\/cgroup"/' "$work/bundle/config.json" > "$work/check/config.json"
echo "cgroups: this shell $(cat /proc/self/cgroup); shibafu $(shibafu runtime --root "$work/k" run -b "$work/check" k1); runc $(runc --root "$work/k" run -b "$work/check" k2); crun $(crun --root "$work/k" run -b "$work/check" k3)"
shibafu run --rm busybox true >/dev/null
for i in $(seq "$N"); do
    time_one shibafu shibafu runtime --root "$work/s" run -b "$work/bundle" "b$i"
    time_one runc runc --root "$work/r" run -b "$work/bundle" "b$i"
    time_one crun crun --root "$work/c" run -b "$work/bundle" "b$i"
    time_one shibafu-run shibafu run --rm busybox true
done
s=$(median shibafu); r=$(median runc); c=$(median crun); e=$(median shibafu-run)
echo "bench-start in the VM ($(nproc) CPUs, $(uname -r)), median of $N interleaved runs; every runtime makes a cgroup ($(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control))"
echo "  shibafu runtime run : $(ms "$s")"
echo "  runc run            : $(ms "$r")"
echo "  crun run            : $(ms "$c")"
echo "  shibafu run --rm    : $(ms "$e")   (the whole engine, bridge network)"
echo "  ratios: shibafu/crun $(ratio "$s" "$c")  shibafu/runc $(ratio "$s" "$r")  run--rm/runtime $(ratio "$e" "$s")"
rm -rf "$work"
