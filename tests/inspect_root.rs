//! Phase 7's `inspect`, checked against the kernel objects it names: the pid's namespaces, the
//! address and MAC inside the container, the bridge, the overlay mount, the DNAT rule of the
//! published port; `--format`, images and networks, the missing-object error, `--explain`
//! (every command it prints runs), and `run --image` on a network made from the pool.

mod common;

use common::Lab;

/// A web server in busybox: serves "hello-NAME" on port 80.
const WEB: &str = "sh -c 'mkdir -p /www && echo hello-$0 > /www/index.html && exec httpd -f -p 80 -h /www'";

#[test]
fn phase7_inspect_names_the_kernel_objects_behind_a_running_container() {
    let lab = Lab::new();
    let out = lab.ok(&format!(
        r#"
        # The pool's first /24 is taken by a network, its second by a host route.
        shibafu network create other 10.89.0.0/24 >/dev/null
        ip link set lo up && ip route add 10.89.1.0/24 dev lo
        shibafu run --image busybox --network production --publish 80 --env NODE_ENV=production --name webapp {WEB} webapp 2>$LAB/run.err
        echo "run-said=$(cat $LAB/run.err)"
        f() {{ shibafu inspect -f "$1" webapp; }}
        pid=$(f '{{{{.State.Pid}}}}')
        sandbox=$(f '{{{{.NetworkSettings.SandboxKey}}}}')
        [ "$(readlink /proc/$pid/ns/net)" = "$(nsenter --net=$sandbox readlink /proc/self/ns/net)" ] && echo netns-matches
        echo "ip=$(f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}/{{{{.IPPrefixLen}}}}{{{{end}}}}') inside=$(nsenter -t $pid -n ip -o -4 addr show eth0 | awk '{{print $4}}')"
        echo "mac=$(f '{{{{.NetworkSettings.Networks.production.MacAddress}}}}') inside=$(nsenter -t $pid -n ip -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
        echo "gateway=$(f '{{{{.NetworkSettings.Networks.production.Gateway}}}}') bridge=$(ip -o -4 addr show br-production | awk '{{print $4}}')"
        port=$(f '{{{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}}}')
        echo "port=$port answer=$(busybox wget -qO- http://127.0.0.1:$port/)"
        ip=$(f '{{{{.NetworkSettings.Networks.production.IPAddress}}}}')
        iptables -t nat -S SHIBAFU-DNAT | grep -q -- "--dport $port -j DNAT --to-destination $ip:80" && echo dnat-rule-found
        merged=$(f '{{{{.GraphDriver.Data.MergedDir}}}}')
        upper=$(f '{{{{.GraphDriver.Data.UpperDir}}}}')
        findmnt -n -o FSTYPE,OPTIONS "$merged" | grep -q "^overlay .*upperdir=$upper" && echo overlay-mounted
        grep -q "/shibafu/$(f '{{{{.Id}}}}')$" /proc/$pid/cgroup && echo cgroup-named
        [ "$(f '{{{{.Image}}}}')" = "$(shibafu inspect -f '{{{{.Id}}}}' busybox)" ] && echo image-id-matches
        echo "env=$(f '{{{{json .Config.Env}}}}')"
        echo "line=$(f '{{{{.Name}}}} {{{{.State.Status}}}} {{{{.HostConfig.NetworkMode}}}} {{{{upper .Config.Image}}}} {{{{join .Config.Cmd "+"}}}}')"
        echo "network=$(shibafu inspect -f '{{{{.name}}}} {{{{(index .subnets 0).subnet}}}} {{{{.network_interface}}}}' production)"
        echo "image=$(shibafu inspect --type image -f '{{{{index .RepoTags 0}}}} {{{{.RootFS.Type}}}} {{{{len .RootFS.Layers}}}}' busybox)"
        shibafu inspect webapp busybox production > $LAB/all.json
        echo "compact-lines=$(shibafu inspect --format json webapp busybox | wc -l)"
        set +e
        shibafu inspect -f '{{{{.Name}}}}' nosuch webapp 2>$LAB/missing.err; echo "missing-code=$? $(cat $LAB/missing.err)"
        shibafu inspect --type image webapp 2>$LAB/typed.err >/dev/null; echo "typed-code=$? $(cat $LAB/typed.err)"
        shibafu inspect -f '{{{{.State.Nope.X}}}}' webapp 2>$LAB/bad.err; echo "bad-template-code=$? $(cat $LAB/bad.err)"
        set -e
        # Every command the explain trail prints runs as written.
        shibafu --explain inspect webapp busybox production 2>$LAB/explain >/dev/null
        grep -c '^+ ' $LAB/explain
        grep '^+ ' $LAB/explain | sed 's/^+ //; s/  #.*//' > $LAB/commands
        while read -r cmd; do bash -c "$cmd" >/dev/null 2>&1 || echo "explained-command-failed: $cmd"; done < $LAB/commands
        echo "ns-line=$(grep -F -c "readlink /proc/$pid/ns/net  # $(readlink /proc/$pid/ns/net)" $LAB/explain)"
        echo "dnat-line=$(grep -F -c -- "grep -- '--dport $port '  # NetworkSettings.Ports 80/tcp" $LAB/explain)"
        shibafu stop -t 1 webapp >/dev/null
        echo "stopped=$(f '{{{{.State.Status}}}} {{{{.State.Pid}}}} {{{{.NetworkSettings.SandboxKey}}}}|{{{{.State.ExitCode}}}}')"
        shibafu --explain inspect webapp 2>&1 >/dev/null | grep -c 'webapp is exited: no process'
        "#
    ));
    for want in [
        "run-said=network production created: 10.89.2.0/24",
        "netns-matches",
        "ip=10.89.2.2/24 inside=10.89.2.2/24",
        "gateway=10.89.2.1 bridge=10.89.2.1/24",
        "port=30001 answer=hello-webapp",
        "dnat-rule-found",
        "overlay-mounted",
        "cgroup-named",
        "image-id-matches",
        "NODE_ENV=production",
        "line=/webapp running production BUSYBOX:LATEST sh+-c+mkdir",
        "network=production 10.89.2.0/24 br-production",
        "image=busybox:latest layers 1",
        "missing-code=1 Error: No such object: nosuch",
        "typed-code=1 Error: No such image: webapp",
        "bad-template-code=125 shibafu: template: executing {{.State.Nope.X}}: nil pointer evaluating .State.Nope.X",
        "compact-lines=1",
        "ns-line=1",
        "dnat-line=1",
        "stopped=exited 0 |1",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let mac = out.split("mac=").nth(1).and_then(|l| l.lines().next()).unwrap_or_default();
    let (shown, inside) = mac.split_once(" inside=").unwrap_or_default();
    assert!(shown.len() == 17 && shown == inside, "MacAddress is the one eth0 has: {mac}");
    assert!(out.contains("/webapp\nmissing-code=1"), "the found object is printed despite the missing one: {out}");
    assert!(!out.contains("explained-command-failed"), "{out}");
    let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(lab.dir.path().join("all.json")).unwrap()).unwrap();
    let [container, image, network] = all.as_array().unwrap().as_slice() else { panic!("three documents: {all}") };
    assert_eq!(container["Name"], "/webapp");
    assert_eq!(container["State"]["Running"], true);
    assert_eq!(container["Config"]["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
    assert_eq!(container["GraphDriver"]["Layers"][0]["DiffID"], image["RootFS"]["Layers"][0]);
    assert_eq!(container["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"], "30001");
    assert_eq!(image["RepoTags"][0], "busybox:latest");
    assert_eq!(network["name"], "production");
}

#[test]
fn run_makes_missing_networks_from_the_pool_and_a_failed_run_takes_its_network_back() {
    let out = Lab::new().ok(
        r#"
        shibafu run -d --network auto1 --name a busybox sleep 100 2>$LAB/a.err >/dev/null
        echo "a-said=$(cat $LAB/a.err)"
        shibafu run -d --network auto1 --name b busybox sleep 100 2>$LAB/b.err >/dev/null
        echo "b-said=[$(cat $LAB/b.err)]"
        links_before=$(ip -o link | awk '{print $2}' | sort | tr '\n' ' ')
        if shibafu run --image busybox --network auto2 /no/such 2>$LAB/c.err; then echo failed-run-accepted; fi
        echo "c-said=$(head -1 $LAB/c.err)"
        echo "networks=$(shibafu network ls | awk 'NR > 1 {print $1 "=" $3}' | tr '\n' ' ')"
        [ "$links_before" = "$(ip -o link | awk '{print $2}' | sort | tr '\n' ' ')" ] && echo links-unchanged
        if shibafu run --network 'bad name' busybox true 2>$LAB/d.err; then echo bad-name-accepted; fi
        cat $LAB/d.err
        echo "containers=$(shibafu list -aq | wc -l)"
        echo "ips=$(shibafu inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' a b | tr '\n' ' ')"
        "#,
    );
    for want in [
        "a-said=network auto1 created: 10.89.0.0/24",
        "b-said=[]",
        "c-said=network auto2 created: 10.89.1.0/24",
        "networks=auto1=10.89.0.0/24 bridge=172.20.0.0/24 ",
        "links-unchanged",
        "invalid network name \"bad name\"",
        "containers=2",
        "ips=10.89.0.2 10.89.0.3 ",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(!out.contains("accepted"), "{out}");
}
