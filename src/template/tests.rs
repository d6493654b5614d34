use serde_json::json;

use super::*;

fn render(template: &str, data: &serde_json::Value) -> String {
    Template::parse(template).unwrap_or_else(|e| panic!("{template}: {e}")).render(data).unwrap_or_else(|e| panic!("{template}: {e}"))
}

fn failure(template: &str, data: &serde_json::Value) -> String {
    match Template::parse(template) {
        Err(e) => e.to_string(),
        Ok(t) => t.render(data).expect_err(template).to_string(),
    }
}

fn container() -> serde_json::Value {
    json!({
        "Id": "abc",
        "Name": "/web",
        "State": {"Pid": 4242, "Running": true, "Health": null},
        "Config": {"Labels": {"tier": "front", "app.kind": "web"}, "Env": ["A=1", "B=2"]},
        "NetworkSettings": {
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "30001"}]},
            "Networks": {"frontend": {"IPAddress": "172.21.0.2"}, "backend": {"IPAddress": "172.22.0.2"}}
        }
    })
}

#[test]
fn docker_paths_and_functions() {
    let c = container();
    assert_eq!(render("{{.State.Pid}}", &c), "4242");
    assert_eq!(render("{{.Name}}", &c), "/web");
    assert_eq!(render("{{json .NetworkSettings.Ports}}", &c), r#"{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"30001"}]}"#);
    assert_eq!(render("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", &c), "172.22.0.2 172.21.0.2 ", "maps range in key order");
    assert_eq!(render("{{range $name, $n := .NetworkSettings.Networks}}{{$name}}={{$n.IPAddress}};{{end}}", &c), "backend=172.22.0.2;frontend=172.21.0.2;");
    assert_eq!(render(r#"{{index .Config.Labels "app.kind"}}"#, &c), "web");
    assert_eq!(render(r#"{{join .Config.Env ","}}"#, &c), "A=1,B=2");
    assert_eq!(render("{{.Name | upper}}{{println}}{{lower \"X\"}}", &c), "/WEB\nx");
    assert_eq!(render("{{title \"hello world\"}}", &c), "Hello World");
    assert_eq!(render(r#"{{range $p, $b := .NetworkSettings.Ports}}{{$p}} -> {{(index $b 0).HostPort}}{{end}}"#, &c), "80/tcp -> 30001");
    assert_eq!(render(r#"{{split "a:b" ":"}} {{len .Config.Env}}"#, &c), "[a b] 2");
    assert_eq!(render(r#"{{printf "%s has %d" .Name .State.Pid}}"#, &c), "/web has 4242");
    assert_eq!(render("{{.Config.Labels}}", &c), "map[app.kind:web tier:front]");
    assert_eq!(render("{{.State.Health}} {{.State.Nope}}", &c), "<nil> <no value>");
    assert_eq!(render("{{with .State}}{{.Pid}}{{end}}{{with .State.Health}}x{{else}}none{{end}}", &c), "4242none");
}

#[test]
fn conditions_variables_and_trimming() {
    let c = container();
    assert_eq!(render("{{if .State.Running}}up{{else}}down{{end}}", &c), "up");
    assert_eq!(render("{{if not .State.Running}}down{{else if eq .Name \"/web\"}}web{{else}}?{{end}}", &c), "web");
    assert_eq!(render("{{if and .State.Running (gt .State.Pid 1)}}ok{{end}}", &c), "ok");
    assert_eq!(render("{{$n := .Name}}{{range .Config.Env}}{{$n}}:{{.}} {{end}}", &c), "/web:A=1 /web:B=2 ");
    assert_eq!(render("{{range .Missing}}x{{else}}empty{{end}}", &c), "empty");
    assert_eq!(render("a  {{- .Id -}}  b {{/* a comment */}}", &c), "aabcb ");
    assert_eq!(render("{{range $i, $e := .Config.Env}}{{$i}}{{$.Id}}{{end}}", &c), "0abc1abc");
}

#[test]
fn mistakes_are_clear_errors() {
    let c = container();
    let cases = [
        ("{{.State.Pid", "unclosed action"),
        ("{{if .Name}}x", "has no {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{nosuch .Name}}", "function \"nosuch\" not defined"),
        ("{{.Name.First}}", "can't evaluate field First in string .Name"),
        ("{{.State.Health.Status}}", "nil pointer evaluating .State.Health.Status"),
        ("{{template \"x\"}}", "not supported"),
        ("{{$x}}", "undefined variable $x"),
        ("{{.Name .Id}}", "only a function takes arguments"),
        ("{{join .Name}}", "wrong number of args for join"),
    ];
    for (template, want) in cases {
        let got = failure(template, &c);
        assert!(got.contains(want), "{template}: {got}");
    }
}
