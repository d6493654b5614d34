//! Phase 8 root tests: `paas serve` builds apps from their code on the lab's runtime images,
//! runs them on the network `platform`, checks them, and the proxy routes APP.platform.local
//! to the live version.

mod common;

use common::{platform, Lab};

/// The failure report: the service's log and every deployment's record.
const REPORT: &str = r#"
    report() { echo "--- paas.log"; cat $LAB/paas.log; for a in $(curl -s $api/apps | jq -r '.[].name'); do curl -s $api/apps/$a/deployments | jq -c '.[] | [.deployment_id,.status,.reason]'; done; }
"#;

#[test]
fn phase8_node_python_static_and_procfile_apps_deploy_and_answer_by_name() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        {REPORT}
        mkdir $LAB/site && echo hello-static > $LAB/site/index.html && chmod 600 $LAB/site/index.html
        tar -C $LAB/site -czf $LAB/site.tgz .
        mkdir $LAB/api && echo '{{"scripts":{{"start":"node server.js"}}}}' > $LAB/api/package.json
        echo "require('http').createServer((q,s)=>s.end('hello-node '+process.env.GREETING+' '+process.env.PORT)).listen(process.env.PORT)" > $LAB/api/server.js
        tar -C $LAB/api -czf $LAB/api.tgz .
        mkdir $LAB/py && cat > $LAB/py/app.py <<'PY'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello-python " + os.environ["PORT"].encode())
http.server.HTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
PY
        tar -C $LAB/py -cf $LAB/py.tar .
        mkdir $LAB/proc && cp $LAB/py/app.py $LAB/proc/web.py && echo 'web: python3 web.py' > $LAB/proc/Procfile
        tar -C $LAB/proc -czf $LAB/proc.tgz .
        echo "static=$(deploy $LAB/site.tgz -F app_name=site -F runtime=static)"
        echo "site=$(settle $(jq -r .deployment_id $LAB/answer))"
        deploy $LAB/api.tgz -F app_name=api -F runtime=node:18 -F 'env[GREETING]=hi' >/dev/null
        echo "api=$(settle $(jq -r .deployment_id $LAB/answer))"
        deploy $LAB/py.tar -F app_name=py -F runtime=python:3.11 -F port=5000 >/dev/null
        echo "py=$(settle $(jq -r .deployment_id $LAB/answer))"
        deploy $LAB/proc.tgz -F app_name=proc -F runtime=python:3.11 >/dev/null
        proc=$(jq -r .deployment_id $LAB/answer)
        echo "proc=$(settle $proc)"
        python3 -c "import zipfile, sys; z = zipfile.ZipFile(sys.argv[1], 'w'); z.write(sys.argv[2], 'index.html'); z.close()" $LAB/site.zip $LAB/site/index.html
        deploy $LAB/site.zip -F app_name=zipped -F runtime=static >/dev/null
        echo "zipped=$(settle $(jq -r .deployment_id $LAB/answer)) $(get zipped)"
        # Any image, with the command field: busybox's httpd serves the same site.
        deploy $LAB/site.tgz -F app_name=anyimage -F runtime=busybox:latest -F 'command=httpd -f -p $PORT -h /app' >/dev/null
        echo "anyimage=$(settle $(jq -r .deployment_id $LAB/answer)) $(get anyimage)"
        [ "$(curl -s $api/apps | jq length)" = 6 ] || report
        echo "site-body=$(get site)"
        echo "api-body=$(get api)"
        echo "py-body=$(get py)"
        echo "proc-body=$(get proc)"
        echo "apps=$(curl -s $api/apps | jq -c '[.[] | [.name, .status]]')"
        echo "proc-record=$(curl -s $api/deployments/$proc | jq -c '[.app, .image, (.command | join(" ")), .container]')"
        echo "proc-log=$(curl -s $api/deployments/$proc | jq -r '.log[]' | grep -c 'Procfile')"
        echo "env-shown=$(curl -s $api/deployments/dep-2 | jq -c .env)"
        echo "image=$(shibafu image ls | grep -c 'localhost:5000/apps/api')"
        echo "pushed=$(curl -s http://127.0.0.1:5000/v2/apps/api/tags/list)"
        echo "unknown=$(curl -s -o /dev/null -w '%{{http_code}}' $api/deployments/dep-99)"
        echo "openapi=$(curl -s $api/openapi.json | jq -c '[.info.title, (.paths | keys | length), (.paths["/api/deploy"].post.requestBody.content | keys)]')"
        # By name, with no Host header: our DNS answers APP.platform.local with the address
        # asked, where the proxy listens, for the host (its own listener) and for apps.
        printf 'nameserver 127.0.0.53\n' > $LAB/resolv.conf && mount --bind $LAB/resolv.conf /etc/resolv.conf
        shibafu dns serve --proxy-domain platform.local --host-address 127.0.0.53 >$LAB/dns.log 2>&1 &
        for i in $(seq 50); do getent hosts site.platform.local >/dev/null && break; sleep 0.1; done
        echo "by-name=$(curl -s --max-time 5 http://site.platform.local/)"
        echo "from-app=$(shibafu exec api-dep-2 node -e "require('http').get('http://site.platform.local/',r=>r.pipe(process.stdout))")"
        "#,
        platform = platform(),
    ));
    for want in [
        r#"static=202 {"deployment_id":"dep-1","status":"building","url":"http://site.platform.local"}"#,
        "site=live",
        "api=live",
        "py=live",
        "proc=live",
        "site-body=hello-static",
        "api-body=hello-node hi 8080",
        "py-body=hello-python 5000",
        "proc-body=hello-python 8080",
        "zipped=live hello-static",
        "anyimage=live hello-static",
        r#"apps=[["anyimage","live"],["api","live"],["proc","live"],["py","live"],["site","live"],["zipped","live"]]"#,
        r#"proc-record=["proc","localhost:5000/apps/proc:dep-4","/bin/sh -c python3 web.py","proc-dep-4"]"#,
        "proc-log=1",
        r#"env-shown=["GREETING"]"#,
        "image=1",
        r#"pushed={"name":"apps/api","tags":["dep-2"]}"#,
        "unknown=404",
        r#"openapi=["shibafu PaaS API",15,["multipart/form-data"]]"#,
        "by-name=hello-static",
        "from-app=hello-static",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn phase8_a_redeploy_switches_with_no_error_and_a_failing_one_leaves_the_old_serving() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        {REPORT}
        app() {{ mkdir -p $LAB/$1 && echo "require('http').createServer((q,s)=>s.end('$2')).listen(process.env.PORT)" > $LAB/$1/server.js && tar -C $LAB/$1 -czf $LAB/$1.tgz .; }}
        app v1 version-1; app v2 version-2
        mkdir $LAB/crash && echo "process.exit(3)" > $LAB/crash/server.js && tar -C $LAB/crash -czf $LAB/crash.tgz .
        mkdir $LAB/nothing && echo hi > $LAB/nothing/README && tar -C $LAB/nothing -czf $LAB/nothing.tgz .
        deploy $LAB/v1.tgz -F app_name=web -F runtime=node:18 >/dev/null
        echo "v1=$(settle $(jq -r .deployment_id $LAB/answer)) $(get web)"
        # Requests all through the next deploy: every one is answered by one version or the other.
        ( for i in $(seq 400); do get web; echo; sleep 0.01; done > $LAB/during ) &
        loop=$!
        deploy $LAB/v2.tgz -F app_name=web -F runtime=node:18 >/dev/null
        echo "v2=$(settle $(jq -r .deployment_id $LAB/answer)) $(get web)"
        deploy $LAB/crash.tgz -F app_name=web -F runtime=node:18 >/dev/null
        crash=$(jq -r .deployment_id $LAB/answer)
        echo "crash=$(settle $crash) $(get web)"
        echo "crash-reason=$(curl -s $api/deployments/$crash | jq -r .reason)"
        deploy $LAB/nothing.tgz -F app_name=web -F runtime=node:18 >/dev/null
        nothing=$(jq -r .deployment_id $LAB/answer)
        echo "nothing=$(settle $nothing) $(get web)"
        echo "nothing-reason=$(curl -s $api/deployments/$nothing | jq -r .reason)"
        wait $loop
        echo "during=$(sort -u $LAB/during | tr '\n' ' ')"
        echo "containers=$(shibafu list -a --format '{{{{.Names}}}}' | sort | tr '\n' ' ')"
        echo "history=$(curl -s $api/apps/web/deployments | jq -c '[.[] | .status]')"
        echo "app=$(curl -s $api/apps/web | jq -c '[.status, .live_deployment, .last_failure.deployment_id]')"
        "#,
        platform = platform(),
    ));
    for want in [
        "v1=live version-1",
        "v2=live version-2",
        "crash=failed version-2",
        "crash-reason=health check: the app exited before it answered",
        "nothing=failed version-2",
        "nothing-reason=detect: nothing to run: no Procfile web: line, no package.json scripts.start or main, no server.js",
        "during=version-1 version-2 \n",
        "containers=web-dep-2 \n",
        r#"history=["failed","failed","live","superseded"]"#,
        r#"app=["live","dep-2","dep-4"]"#,
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn phase8_bad_deploys_say_which_field_and_store_nothing() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        mkdir $LAB/ok && echo hi > $LAB/ok/index.html && tar -C $LAB/ok -czf $LAB/ok.tgz .
        echo 'just text' > $LAB/text.txt
        python3 - $LAB <<'PY'
import io, sys, tarfile
lab = sys.argv[1]
def tar(name, add):
    with tarfile.open(f"{{lab}}/{{name}}", "w:gz") as t:
        add(t)
def member(t, name, **kw):
    info = tarfile.TarInfo(name)
    for k, v in kw.items(): setattr(info, k, v)
    t.addfile(info, io.BytesIO(b"x" * info.size))
tar("dotdot.tgz", lambda t: member(t, "../escape", size=1))
tar("abs.tgz", lambda t: member(t, "/etc/escape", size=1))
tar("link.tgz", lambda t: member(t, "passwd", type=tarfile.SYMTYPE, linkname="/etc/passwd"))
tar("dev.tgz", lambda t: member(t, "null", type=tarfile.CHRTYPE, devmajor=1, devminor=3))
import zipfile
with zipfile.ZipFile(f"{{lab}}/dotdot.zip", "w") as z:
    z.writestr("../escape", "x")
PY
        head -c 9000000 /dev/urandom > $LAB/big.bin
        try() {{ f=$1; shift; code=$(curl -s -o $LAB/answer -w '%{{http_code}}' "$@" $api/deploy); echo "$f=$code $(jq -r '.field + ": " + .error' $LAB/answer)"; }}
        try name -F app_name=Bad_Name -F runtime=static -F code=@$LAB/ok.tgz
        try missing -F runtime=static -F code=@$LAB/ok.tgz
        try runtime -F app_name=a -F runtime=ruby -F code=@$LAB/ok.tgz
        try nocode -F app_name=a -F runtime=static
        try text -F app_name=a -F runtime=static -F code=@$LAB/text.txt
        try dotdot -F app_name=a -F runtime=static -F code=@$LAB/dotdot.tgz
        try abs -F app_name=a -F runtime=static -F code=@$LAB/abs.tgz
        try link -F app_name=a -F runtime=static -F code=@$LAB/link.tgz
        try dev -F app_name=a -F runtime=static -F code=@$LAB/dev.tgz
        try zipdotdot -F app_name=a -F runtime=static -F code=@$LAB/dotdot.zip
        try big -F app_name=a -F runtime=static -F code=@$LAB/big.bin
        try envkey -F app_name=a -F runtime=static -F 'env[1X]=v' -F code=@$LAB/ok.tgz
        try port -F app_name=a -F runtime=static -F port=0 -F code=@$LAB/ok.tgz
        try unknown -F app_name=a -F runtime=static -F colour=red -F code=@$LAB/ok.tgz
        try notform -H 'Content-Type: application/json' -d '{{}}'
        # A body that stops half-way: the form's head promises more than comes.
        printf -- '--XX\r\nContent-Disposition: form-data; name="app_name"\r\n\r\nhalf\r\n--XX\r\nContent-Disposition: form-data; name="code"; filename="a.tgz"\r\n\r\nabc' > $LAB/half
        try half -H 'Content-Type: multipart/form-data; boundary=XX' --data-binary @$LAB/half
        echo "uploads=$(ls -A $SHIBAFU_ROOT/paas/uploads | wc -l) builds=$(ls -A $SHIBAFU_ROOT/paas/builds | wc -l)"
        # From another address than loopback, the token is needed.
        ip addr add 10.250.0.1/32 dev lo
        echo "remote=$(curl -s -o /dev/null -w '%{{http_code}}' http://10.250.0.1:8080/api/apps) $(curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer nope' http://10.250.0.1:8080/api/apps) $(curl -s -o /dev/null -w '%{{http_code}}' -H "Authorization: Bearer $(cat $SHIBAFU_ROOT/paas/api.token)" http://10.250.0.1:8080/api/apps)"
        echo "apps=$(curl -s $api/apps)"
        "#,
        platform = platform(),
    ));
    for want in [
        "name=400 app_name: \"Bad_Name\" is not an app name",
        "missing=400 app_name: missing",
        "runtime=400 runtime: unknown runtime \"ruby\"",
        "nocode=400 code: missing",
        "text=400 code: not a tar or tar.gz archive",
        "dotdot=400 code: unsafe entry",
        "abs=400 code: unsafe entry",
        "link=400 code: unsafe entry \"passwd\": the link points outside the tree (/etc/passwd)",
        "dev=400 code: unsafe entry \"null\": a device, fifo or socket",
        "zipdotdot=400 code: unsafe entry \"../escape\"",
        "big=413 code: the archive is over the 8.0 MiB limit",
        "envkey=400 env[1X]: \"1X\" is not a variable name",
        "port=400 port: \"0\" is not a port",
        "unknown=400 colour: unknown field",
        "notform=400 form: ",
        "half=400 ",
        "uploads=0 builds=0",
        "remote=401 401 200",
        "apps=[]",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn phase8_env_and_secret_changes_are_releases_rollback_restores_and_secrets_never_show() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        {REPORT}
        one=s3cr3t-value-one; two=s3cr3t-value-two
        hash() {{ printf %s "$1" | sha256sum | cut -c1-12; }}
        app() {{
            mkdir -p $LAB/$1
            echo "require('http').createServer((q,s)=>s.end('$1 '+process.env.GREETING+' '+(process.env.TOKEN?require('crypto').createHash('sha256').update(process.env.TOKEN).digest('hex').slice(0,12):'none'))).listen(process.env.PORT)" > $LAB/$1/server.js
            tar -C $LAB/$1 -czf $LAB/$1.tgz .
        }}
        app v1; app v2
        # Every answer of the API is kept, to look for the secrets in.
        call() {{ curl -s "$@" | tee -a $LAB/responses; echo >> $LAB/responses; }}
        step() {{
            id=$(call "$@" | jq -r .deployment_id); s=$(settle $id)
            [ "$s" = live ] || curl -s $api/deployments/$id | jq -r '.reason, .log[]' >&2
            echo "$s $(get web)"
        }}
        echo "dep-1=$(step -F app_name=web -F runtime=node:18 -F 'env[GREETING]=hello' -F "secret[TOKEN]=$one" -F code=@$LAB/v1.tgz $api/deploy)"
        echo "dep-2=$(step -X PUT --data-binary bonjour $api/apps/web/env/GREETING)"
        echo "dep-3=$(step -X PUT --data-binary $two $api/apps/web/secrets/TOKEN)"
        echo "dep-4=$(step -F app_name=web -F runtime=node:18 -F code=@$LAB/v2.tgz $api/deploy)"
        call -X POST $api/apps/web/rollback > $LAB/rollback
        echo "restores=$(jq -c '[.deployment_id, .restores.deployment_id, .restores.env, .restores.secrets, .source]' $LAB/rollback)"
        echo "dep-5=$(settle dep-5) $(get web)"
        echo "dep-6=$(step -X POST "$api/apps/web/rollback?to=dep-1")"
        echo "diff=$(call "$api/apps/web/diff?from=dep-1&to=dep-4" | jq -c '[(.image.to | split(":")[2]), .env.changed.GREETING.to, .secrets.changed, .env.added, .port]')"
        echo "sources=$(call $api/apps/web/deployments | jq -c '[.[].source] | reverse')"
        echo "config=$(call $api/apps/web/config | jq -c '[.env, [.secrets[].name], .config_version]')"
        echo "inspect=$(shibafu inspect --format '{{{{json .Config.Env}}}}' web-dep-6 | jq -c '[.[] | select(startswith("TOKEN") or startswith("GREETING"))]')"
        echo "dep-7=$(step -X DELETE $api/apps/web/secrets/TOKEN)"
        echo "missing=$(call -o /dev/null -w '%{{http_code}}' -X DELETE $api/apps/web/secrets/TOKEN)"
        echo "conflict=$(call -X PUT --data-binary x $api/apps/web/secrets/GREETING | jq -r .error)"
        shibafu inspect web-dep-7 >> $LAB/responses
        # The values are nowhere: API answers, inspect, the service's and proxy's logs, build
        # logs, container logs, the state database (sealed there).
        echo "leaks=$(grep -rlaF -e $one -e $two $LAB/responses $LAB/paas.log $LAB/proxy.log $SHIBAFU_ROOT/paas $SHIBAFU_ROOT/state.db* $(find $SHIBAFU_ROOT/containers -name '*.log') | wc -l)"
        echo "key-mode=$(stat -c %a $SHIBAFU_ROOT/paas/secret.key) $(stat -c %a $SHIBAFU_ROOT/containers/*/config.json | sort -u | tr '\n' ' ')"
        echo "hashes=$(hash $one) $(hash $two)"
        echo "deleted=$(curl -s -X DELETE $api/apps/web | jq -c '.removed | length')"
        echo "after=$(curl -s -o /dev/null -w '%{{http_code}}' $api/apps/web) $(shibafu list -a -q | wc -l) $(shibafu image ls | grep -c apps/web || true) [$(get web)]"
        "#,
        platform = platform(),
    ));
    let hash = |key: &str| out.split("hashes=").nth(1).and_then(|t| t.split_whitespace().nth(if key == "one" { 0 } else { 1 })).unwrap_or("?").to_string();
    let (one, two) = (hash("one"), hash("two"));
    for want in [
        format!("dep-1=live v1 hello {one}"),
        format!("dep-2=live v1 bonjour {one}"),
        format!("dep-3=live v1 bonjour {two}"),
        format!("dep-4=live v2 bonjour {two}"),
        r#"restores=["dep-5","dep-3",["GREETING"],["TOKEN"],"rollback to dep-3"]"#.to_string(),
        format!("dep-5=live v1 bonjour {two}"),
        format!("dep-6=live v1 hello {one}"),
        r#"diff=["dep-4","bonjour",["TOKEN"],{},null]"#.to_string(),
        r#"sources=["build","env set GREETING","secret set TOKEN","build","rollback to dep-3","rollback to dep-1"]"#.to_string(),
        // dep-4 changed no config, and dep-5 put back what dep-4 had.
        r#"config=[{"GREETING":"hello"},["TOKEN"],4]"#.to_string(),
        r#"inspect=["GREETING=hello","TOKEN=<secret>"]"#.to_string(),
        "dep-7=live v1 hello none".to_string(),
        "missing=404".to_string(),
        "conflict=GREETING is set as an env variable already: unset it there first".to_string(),
        "leaks=0".to_string(),
        // The bundle's config.json holds the secrets for the runtime: its owner's only.
        "key-mode=600 600 \n".to_string(),
        // web-dep-7, and the two images built (dep-1 and dep-4).
        "deleted=3".to_string(),
        "after=404 0 0 [no running container answers for host \"web.platform.local\"".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} missing: {out}");
    }
}

#[test]
fn phase8_a_live_version_that_errs_or_hangs_is_restarted_and_a_crash_comes_back() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        {REPORT}
        mkdir $LAB/app && cat > $LAB/app/server.js <<'JS'
let broken = false, hung = false;
require('http').createServer((q, s) => {{
    if (q.url === '/hang') hung = true;
    if (hung) return;
    if (q.url === '/break') broken = true;
    if (q.url === '/crash') process.exit(7);
    s.statusCode = broken ? 500 : 200;
    s.end(broken ? 'broken' : 'fine');
}}).listen(process.env.PORT);
JS
        tar -C $LAB/app -czf $LAB/app.tgz .
        deploy $LAB/app.tgz -F app_name=web -F runtime=node:18 >/dev/null
        echo "live=$(settle $(jq -r .deployment_id $LAB/answer)) $(get web)"
        get web break >/dev/null
        for i in $(seq 100); do [ "$(curl -s $api/apps/web | jq .health_restarts)" = 1 ] && break; sleep 0.1; done
        for i in $(seq 100); do [ "$(get web)" = fine ] && break; sleep 0.1; done
        echo "after-break=$(get web) $(curl -s $api/apps/web | jq -c '[.health_restarts, (.last_check_failure | test("2 failed checks in a row \\(GET / answered 500\\): restarted web-dep-1"))]')"
        get web crash >/dev/null || true
        for i in $(seq 100); do [ "$(get web)" = fine ] && break; sleep 0.1; done
        echo "after-crash=$(get web) $(curl -s $api/apps/web | jq -c '[.restarts, .status, .state]')"
        # A hang: no answer at all; each check times out, then the restart.
        curl -s --max-time 1 -H 'Host: web.platform.local' http://127.0.0.1/hang >/dev/null || true
        for i in $(seq 300); do [ "$(curl -s $api/apps/web | jq .health_restarts)" = 2 ] && break; sleep 0.1; done
        for i in $(seq 100); do [ "$(get web)" = fine ] && break; sleep 0.1; done
        echo "after-hang=$(get web) $(curl -s $api/apps/web | jq -c '[.health_restarts, (.last_check_failure | test("gave no answer within 2 s"))]')"
        "#,
        platform = platform(),
    ));
    for want in ["live=live fine", "after-break=fine [1,true]", r#"after-crash=fine [1,"live","running"]"#, "after-hang=fine [2,true]"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn phase8_a_service_killed_mid_deploy_fails_what_it_left_and_the_old_version_serves() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        {REPORT}
        mkdir $LAB/v1 $LAB/slow
        echo "require('http').createServer((q,s)=>s.end('v1')).listen(process.env.PORT)" > $LAB/v1/server.js
        echo "setTimeout(()=>require('http').createServer((q,s)=>s.end('slow')).listen(process.env.PORT), 20000)" > $LAB/slow/server.js
        tar -C $LAB/v1 -czf $LAB/v1.tgz . && tar -C $LAB/slow -czf $LAB/slow.tgz .
        deploy $LAB/v1.tgz -F app_name=web -F runtime=node:18 >/dev/null
        echo "v1=$(settle $(jq -r .deployment_id $LAB/answer)) $(get web)"
        deploy $LAB/slow.tgz -F app_name=web -F runtime=node:18 >/dev/null
        for i in $(seq 100); do [ "$(curl -s $api/deployments/dep-2 | jq -r .status)" = starting ] && break; sleep 0.1; done
        deploy $LAB/v1.tgz -F app_name=web -F runtime=node:18 >/dev/null
        echo "before-kill=$(curl -s $api/deployments/dep-2 | jq -r .status) $(curl -s $api/deployments/dep-3 | jq -r .status)"
        pkill -KILL -f 'shibafu paas serve'
        sleep 0.5
        shibafu paas serve --port 8080 2>>$LAB/paas.log &
        for i in $(seq 100); do curl -sf $api/apps >/dev/null && break; sleep 0.1; done
        echo "after=$(curl -s $api/deployments/dep-2 | jq -c '[.status, .reason]') $(curl -s $api/deployments/dep-3 | jq -c '[.status, .reason]') $(get web)"
        echo "containers=$(shibafu list -a --format '{{{{.Names}}}}' | sort | tr '\n' ' ')"
        echo "left=$(find $SHIBAFU_ROOT/paas/builds $SHIBAFU_ROOT/paas/uploads -mindepth 1 | wc -l)"
        deploy $LAB/v1.tgz -F app_name=web -F runtime=node:18 >/dev/null
        echo "again=$(settle $(jq -r .deployment_id $LAB/answer)) $(get web)"
        "#,
        platform = platform(),
    ));
    let restarted = r#"["failed","the service restarted before the deployment finished"]"#;
    for want in [
        "v1=live v1".to_string(),
        "before-kill=starting building".to_string(),
        format!("after={restarted} {restarted} v1"),
        "containers=web-dep-1 \n".to_string(),
        "left=0".to_string(),
        "again=live v1".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} missing: {out}");
    }
}

#[test]
fn phase8_the_app_cli_deploys_a_directory_follows_lists_logs_rolls_back_and_removes() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        for v in one two; do
            mkdir -p $LAB/$v && echo "console.log('started $v'); require('http').createServer((q,s)=>{{console.log('GET '+q.url); s.end('$v')}}).listen(process.env.PORT)" > $LAB/$v/server.js
        done
        shibafu --explain app deploy $LAB/one --name cli --runtime node:18 -e GREETING=hi --secret TOKEN=t0k3n-value > $LAB/deploy.out 2>&1
        echo "deploy=$(head -1 $LAB/deploy.out | jq -r .deployment_id) $(tail -1 $LAB/deploy.out) $(grep -c '^+ shibafu run -d\|^+ curl \|^+ shibafu push\|^+ tar -C\|^+ runtime node:18' $LAB/deploy.out) $(get cli)"
        shibafu app deploy $LAB/two --name cli --runtime node:18 | tail -1
        get cli >/dev/null; get cli hello >/dev/null
        echo "ls=$(shibafu app ls | awk '$1 == "cli" {{print $2, $3}}')"
        echo "logs=$(shibafu app logs cli | tr '\n' ' ')"
        # --tail 1, then what comes: the checks' requests every 500 ms, for 2 s.
        n=$( (timeout 2 shibafu app logs -f --tail 1 cli || true) | grep -c '^GET /')
        [ $n -ge 3 ] && echo "follow=streams" || echo "follow=$n lines"
        echo "history=$(shibafu app history cli | awk '{{print $1, $2}}' | tr '\n' ' ')"
        shibafu app rollback cli | tail -1
        echo "back=$(get cli)"
        echo "status=$(shibafu app status cli | jq -c '[.status, .live_deployment]')"
        echo "bad=$(shibafu app deploy $LAB/one --name Bad --runtime node:18 2>&1; echo " exit=$?")"
        echo "rm=$(shibafu app rm cli | jq -c .deleted) $(shibafu app ls | grep -c cli || true)"
        echo "leak=$(grep -c t0k3n-value $LAB/deploy.out || true)"
        "#,
        platform = platform(),
    ));
    for want in [
        "deploy=dep-1 dep-1 is live: http://cli.platform.local 5 one",
        "dep-2 is live: http://cli.platform.local",
        "ls=live dep-2",
        // The health checks ask for / every 500 ms: their lines come too.
        "logs=started two GET / ",
        "GET /hello ",
        "follow=streams",
        "history=dep-2 live dep-1 superseded ",
        "dep-3 is live: http://cli.platform.local",
        "back=one",
        r#"status=["live","dep-3"]"#,
        "bad=shibafu: 400 Bad Request: app_name: \"Bad\" is not an app name",
        " exit=125",
        r#"rm="cli" 0"#,
        "leak=0",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn phase8_vendored_dependencies_install_offline_and_a_missing_one_is_named() {
    let out = Lab::new().ok(&format!(
        r#"
        {platform}
        mkdir -p $LAB/node/node_modules/greet
        echo '{{"name":"greet","main":"index.js"}}' > $LAB/node/node_modules/greet/package.json
        echo "module.exports = () => 'hello from node_modules'" > $LAB/node/node_modules/greet/index.js
        echo '{{"dependencies":{{"greet":"1.0.0"}},"scripts":{{"start":"node server.js"}}}}' > $LAB/node/package.json
        echo "require('http').createServer((q,s)=>s.end(require('greet')())).listen(process.env.PORT)" > $LAB/node/server.js
        tar -C $LAB/node -czf $LAB/node.tgz .
        mkdir -p $LAB/py/vendor && echo 'greet==1.0' > $LAB/py/requirements.txt
        python3 -c "import zipfile, sys; z = zipfile.ZipFile(sys.argv[1], 'w'); z.writestr('greet/__init__.py', 'def hello(): return \"hello from a wheel\"\n'); z.close()" $LAB/py/vendor/greet-1.0-py3-none-any.whl
        cat > $LAB/py/app.py <<'PY'
import http.server, os, greet
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(greet.hello().encode())
http.server.HTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
PY
        tar -C $LAB/py -czf $LAB/py.tgz .
        rm -r $LAB/node/node_modules && tar -C $LAB/node -czf $LAB/bare.tgz .
        deploy $LAB/node.tgz -F app_name=nodedeps -F runtime=node:18 >/dev/null
        echo "node=$(settle $(jq -r .deployment_id $LAB/answer)) $(get nodedeps)"
        deploy $LAB/py.tgz -F app_name=pydeps -F runtime=python:3.11 >/dev/null
        id=$(jq -r .deployment_id $LAB/answer)
        echo "python=$(settle $id) $(get pydeps) $(curl -s $api/deployments/$id | jq -r '.log[]' | grep -c 'unpacked vendor/greet-1.0-py3-none-any.whl')"
        deploy $LAB/bare.tgz -F app_name=bare -F runtime=node:18 >/dev/null
        id=$(jq -r .deployment_id $LAB/answer)
        echo "bare=$(settle $id) $(curl -s $api/deployments/$id | jq -r .reason)"
        "#,
        platform = platform(),
    ));
    for want in [
        "node=live hello from node_modules",
        "python=live hello from a wheel 1",
        "bare=failed dependencies: package.json depends on greet, which node_modules/ does not hold: the lab has no npm registry",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}
