//! Phase 8 of shared/PHASES.md, as written: a node app goes to the PaaS's deploy API
//! (shibafu-paas.service) as app.tar.gz, is built on the lab's node:18, runs on the network
//! platform (its image pushed to the appliance's registry), and answers at http://myapp.platform.local, a name the VM resolves through
//! shibafu-dns.service and the proxy serves on port 80, with no /etc/hosts line.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase8_a_small_paas_api() {
    let mut vm = Vm::boot("phase8", Duration::from_secs(900));
    vm.sh("systemctl start shibafu-paas.service; for i in $(seq 100); do curl -sf localhost:8080/api/apps >/dev/null && break; sleep 0.2; done");
    vm.sh("mkdir -p /tmp/myapp && echo '{\"scripts\":{\"start\":\"node server.js\"}}' > /tmp/myapp/package.json");
    vm.sh("echo \"require('http').createServer((q,s)=>s.end('myapp says hi; DATABASE_URL='+process.env.DATABASE_URL+'\\\\n')).listen(process.env.PORT)\" > /tmp/myapp/server.js");
    vm.sh("tar -C /tmp/myapp -czf app.tar.gz .");
    let posted = vm.sh("curl -X POST http://localhost:8080/api/deploy \\\n  -F \"app_name=myapp\" \\\n  -F \"runtime=node:18\" \\\n  -F \"code=@app.tar.gz\" \\\n  -F \"env[DATABASE_URL]=postgres://...\"");
    vm.check(posted.contains(r#"{"deployment_id":"dep-1","status":"building","url":"http://myapp.platform.local"}"#), &format!("POST /api/deploy:\n{posted}"));
    vm.sh("for i in $(seq 300); do curl -s http://localhost:8080/api/deployments/dep-1 | grep -q '\"status\":\"\\(building\\|starting\\)\"' || break; sleep 0.2; done");
    let status = vm.sh("curl http://localhost:8080/api/deployments/dep-1");
    vm.check(status.contains(r#""status":"live""#) && status.contains(r#""env":["DATABASE_URL"]"#), &format!("the deployment went live:\n{status}"));
    vm.check(!status.contains("postgres://"), &format!("env values are never shown:\n{status}"));
    let page = vm.sh("curl http://myapp.platform.local");
    vm.check(page.contains("myapp says hi; DATABASE_URL=postgres://..."), &format!("the app by its name:\n{page}"));
    let resolved = vm.sh("getent hosts myapp.platform.local; head -1 /etc/resolv.conf");
    let hosts = vm.sh("grep -c platform /etc/hosts || true");
    vm.check(resolved.contains("127.0.0.53") && resolved.contains("myapp.platform.local") && hosts.trim() == "0", &format!("resolved by our DNS, not /etc/hosts:\n{resolved}\n{hosts}"));
    let tags = vm.sh("curl -s http://localhost:5000/v2/apps/myapp/tags/list");
    vm.check(tags.contains(r#""tags":["dep-1"]"#), &format!("the image went to the appliance's registry:\n{tags}"));
    let apps = vm.sh("curl -s http://localhost:8080/api/apps");
    vm.check(apps.contains(r#""name":"myapp""#) && apps.contains(r#""status":"live""#), &format!("GET /api/apps:\n{apps}"));
}
