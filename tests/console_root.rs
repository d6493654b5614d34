//! The web console in a real browser: headless Chromium, driven through chromedriver
//! (WebDriver) from here, against the PaaS, proxy and registry of a private network namespace.
//! Every page the browser sees is saved as a PNG under target/console-screenshots/; a failure
//! names them.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{platform, Lab};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A secret value the pages and answers must never carry.
const SECRET: &str = "s3cret-console-value-7f2a";

/// The platform, chromedriver, and a host address that is not loopback (192.0.2.10 on a
/// veth of its own): the console asks callers there to sign in.
fn script() -> String {
    format!(
        r#"
        {platform}
        ip link add v0 type veth peer name v1 && ip addr add 192.0.2.10/24 dev v0 && ip link set v1 up && ip link set v0 up
        mkdir $LAB/web $LAB/tmp && echo '{{"scripts":{{"start":"node server.js"}}}}' > $LAB/web/package.json
        echo "require('http').createServer((q,s)=>{{console.log('hit '+q.url);s.end('hello from web: '+process.env.GREETING+'\n')}}).listen(process.env.PORT)" > $LAB/web/server.js
        tar -C $LAB/web -czf $LAB/web.tar.gz .
        TMPDIR=$LAB/tmp chromedriver --port=9515 >$LAB/chromedriver.log 2>&1 &
        for i in $(seq 100); do curl -sf http://127.0.0.1:9515/status >/dev/null && break; sleep 0.1; done
        touch $LAB/ready
        while [ ! -e $LAB/done ]; do sleep 0.2; done
        "#,
        platform = platform()
    )
}

/// A browser on the console, and the pictures it took.
struct Browser {
    client: Client,
    test: &'static str,
    shots: Vec<PathBuf>,
}

/// Where screenshots go.
fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

type Step = Result<(), String>;

fn fail(what: impl std::fmt::Display) -> String {
    what.to_string()
}

impl Browser {
    async fn open(test: &'static str) -> Browser {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900",
                         "--host-resolver-rules=MAP *.platform.local 127.0.0.1", "--no-first-run", "--disable-extensions"],
            },
        });
        let caps = caps.as_object().expect("an object").clone();
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(caps).connect("http://127.0.0.1:9515").await.expect("a Chromium session from chromedriver");
        Browser { client, test, shots: Vec::new() }
    }

    /// Saves what the browser shows as `NAME.png`.
    async fn shot(&mut self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let path = shots_dir().join(format!("{}-{:02}-{name}.png", self.test, self.shots.len() + 1));
            if std::fs::write(&path, png).is_ok() {
                self.shots.push(path);
            }
        }
    }

    async fn goto(&mut self, url: &str, name: &str) -> Step {
        self.client.goto(url).await.map_err(|e| fail(format!("open {url}: {e}")))?;
        self.shot(name).await;
        self.no_secret().await
    }

    async fn text(&self, css: &str) -> Result<String, String> {
        self.client.find(Locator::Css(css)).await.map_err(|e| fail(format!("find {css}: {e}")))?.text().await.map_err(fail)
    }

    async fn fill(&self, css: &str, value: &str) -> Step {
        self.client.find(Locator::Css(css)).await.map_err(|e| fail(format!("find {css}: {e}")))?.send_keys(value).await.map_err(fail)
    }

    async fn click(&self, css: &str) -> Step {
        self.client.find(Locator::Css(css)).await.map_err(|e| fail(format!("find {css}: {e}")))?.click().await.map_err(fail)
    }

    /// Waits until the text of `css` (on the page as it reloads) satisfies `ok`.
    async fn wait_text(&self, css: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> Result<String, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if ok(&text) {
                        return Ok(text);
                    }
                    last = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("{css} did not turn as expected within {limit:?}; it said {last:?}"))
    }

    /// The page's HTML must not hold the secret value.
    async fn no_secret(&self) -> Step {
        let source = self.client.source().await.map_err(fail)?;
        if source.contains(SECRET) {
            return Err(format!("the secret's value is in the page {}", self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()));
        }
        Ok(())
    }

    async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }
}

/// Runs the lab's script, then `steps` with a browser inside its network namespace; on a
/// failure, the panic names the screenshots and prints the service's logs.
fn with_console<F, Fut>(test: &'static str, steps: F)
where
    F: FnOnce(Browser, PathBuf) -> Fut,
    Fut: Future<Output = (Browser, Step)>,
{
    let lab = Lab::new();
    let mut child = lab.spawn(&script());
    let dir = lab.dir.path().to_path_buf();
    let start = Instant::now();
    while !dir.join("ready").exists() {
        if start.elapsed() > Duration::from_secs(180) || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!("the platform did not start:\n{}", std::fs::read_to_string(dir.join("script.log")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // This thread joins the lab's network namespace: chromedriver and the console are on its
    // loopback. (Only this thread: the runtime below is a current-thread one.)
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", child.id())).expect("the lab's netns");
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (shots, result) = rt.block_on(async {
        let browser = Browser::open(test).await;
        let (mut browser, result) = steps(browser, dir.clone()).await;
        if result.is_err() {
            browser.shot("failure").await;
        }
        let shots = browser.shots.clone();
        let _ = browser.client.close().await;
        (shots, result)
    });
    std::fs::write(dir.join("done"), "").expect("done");
    let _ = child.wait();
    if let Err(why) = result {
        let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        panic!(
            "{test}: {why}\nscreenshots:\n  {}\n--- paas.log\n{}\n--- script.log\n{}",
            shots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n  "),
            log("paas.log"),
            log("script.log")
        );
    }
}

/// A GET from this thread (inside the lab), as plain HTTP/1.1: the whole answer.
fn get(addr: &str, host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A form POST from this thread to the console on loopback, with more headers: the status line.
fn post(path: &str, headers: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:8080") else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_string()
}

/// A request to an app through the proxy.
fn ask_app(app: &str, path: &str) -> String {
    get("127.0.0.1:80", &format!("{app}.platform.local"), path)
}

/// Every page and API answer about `app` that could carry a secret.
fn secret_sweep(app: &str, deployments: &[&str]) -> Result<(), String> {
    let mut paths = vec![
        "/".to_string(), format!("/apps/{app}"), format!("/apps/{app}/diff?from=dep-1&to=dep-2"), "/lab/containers".into(), "/lab/images".into(),
        "/api/apps".into(), format!("/api/apps/{app}"), format!("/api/apps/{app}/deployments"), format!("/api/apps/{app}/config"),
        format!("/api/apps/{app}/diff?from=dep-1&to=dep-2"), format!("/api/apps/{app}/logs?tail=1000"), "/api/lab/containers".into(),
    ];
    for d in deployments {
        paths.push(format!("/deployments/{d}"));
        paths.push(format!("/api/deployments/{d}"));
    }
    for path in paths {
        let answer = get("127.0.0.1:8080", "127.0.0.1:8080", &path);
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(format!("GET {path}: {}", answer.lines().next().unwrap_or("no answer")));
        }
        if answer.contains(SECRET) {
            return Err(format!("GET {path} carries the secret's value"));
        }
    }
    Ok(())
}

/// A deployment page must reach `live`.
async fn until_live(b: &mut Browser, name: &str) -> Result<String, String> {
    let status = b.wait_text("#deployment-status", Duration::from_secs(120), |t| !t.starts_with("building") && !t.starts_with("starting") && !t.starts_with("queued")).await?;
    b.shot(name).await;
    if !status.starts_with("live") {
        let log = b.text("#build-log").await.unwrap_or_default();
        return Err(format!("the deployment ended {status:?}, not live:\n{log}"));
    }
    Ok(b.url().await)
}

#[test]
fn console_deploys_with_the_form_goes_live_keeps_secrets_out_rolls_back_and_streams_logs() {
    with_console("deploy", |mut b, dir| async move {
        let steps = async {
            b.goto("http://127.0.0.1:8080/", "apps-empty").await?;
            // A bad form is an error page that names the field, and deploys nothing.
            b.fill("#app_name", "web").await?;
            b.fill("#runtime", "node:18").await?;
            b.fill("#code", &dir.join("web.tar.gz").display().to_string()).await?;
            b.fill("#env", "no equals sign").await?;
            b.click("#deploy-button").await?;
            let error = b.text("#error").await?;
            b.shot("bad-form").await;
            if !error.contains("env, line 1") {
                return Err(format!("a bad env line: {error}"));
            }
            b.goto("http://127.0.0.1:8080/", "apps-still-empty").await?;
            if !b.text("main").await?.contains("No apps yet") {
                return Err("a bad form made an app".into());
            }
            // The deploy form: an archive, a runtime, env.
            b.fill("#app_name", "web").await?;
            b.fill("#runtime", "node:18").await?;
            b.fill("#code", &dir.join("web.tar.gz").display().to_string()).await?;
            b.fill("#env", "GREETING=hi-from-the-form").await?;
            b.shot("deploy-form").await;
            b.click("#deploy-button").await?;
            let first = until_live(&mut b, "dep-1-live").await?;
            if !first.ends_with("/deployments/dep-1") {
                return Err(format!("the form led to {first}, not dep-1's page"));
            }
            // Its URL, from the page.
            b.click("a[href='http://web.platform.local']").await?;
            let page = b.wait_text("body", Duration::from_secs(10), |t| t.contains("hello from web")).await?;
            b.shot("app-url").await;
            if !page.contains("hi-from-the-form") {
                return Err(format!("the app did not get the form's env: {page}"));
            }
            b.goto("http://127.0.0.1:8080/", "apps-live").await?;
            let row = b.text("tr[data-app='web']").await?;
            if !row.contains("live") || !row.contains("http://web.platform.local") {
                return Err(format!("the apps table: {row}"));
            }
            // A secret: a new release; its value never comes back.
            b.goto("http://127.0.0.1:8080/apps/web", "app").await?;
            b.fill("#secret-key", "API_KEY").await?;
            b.fill("#secret-value", SECRET).await?;
            b.click("#set-secret button").await?;
            until_live(&mut b, "dep-2-live").await?;
            b.no_secret().await?;
            if !ask_app("web", "/").contains("hello from web") {
                return Err("the app does not answer with its secret set".into());
            }
            secret_sweep("web", &["dep-1", "dep-2"])?;
            b.goto("http://127.0.0.1:8080/apps/web", "app-with-secret").await?;
            let secrets = b.text("#secrets").await?;
            if !secrets.contains("API_KEY") {
                return Err(format!("the secret's name is not listed: {secrets}"));
            }
            b.goto("http://127.0.0.1:8080/apps/web/diff?from=dep-1&to=dep-2", "diff").await?;
            let diff = b.text("#diff-rows").await?;
            if !diff.contains("secret API_KEY") || !diff.contains("(set, hidden)") {
                return Err(format!("the diff: {diff}"));
            }
            // Roll back to dep-1 with its button.
            b.goto("http://127.0.0.1:8080/apps/web", "app-before-rollback").await?;
            b.click("tr[data-deployment='dep-1'] button.rollback").await?;
            let third = until_live(&mut b, "dep-3-live").await?;
            if !third.ends_with("/deployments/dep-3") || !b.text(".facts").await?.contains("rollback to dep-1") {
                return Err(format!("the rollback led to {third}"));
            }
            // The log streams into the open page as the app writes it.
            b.goto("http://127.0.0.1:8080/apps/web", "app-after-rollback").await?;
            b.wait_text("tr[data-deployment='dep-3']", Duration::from_secs(5), |t| t.contains("live")).await?;
            let streaming = b.client.execute("return document.querySelector('#logs').dataset.streaming || ''", vec![]).await.map_err(fail)?;
            if streaming != json!("true") {
                return Err(format!("the log is not streaming: {streaming}"));
            }
            for i in 0..3 {
                ask_app("web", &format!("/streamed-{i}"));
            }
            b.wait_text("#logs", Duration::from_secs(15), |t| t.contains("hit /streamed-2")).await?;
            b.shot("logs-streamed").await;
            secret_sweep("web", &["dep-1", "dep-2", "dep-3"])?;
            // The lab's views.
            for (path, css, expect) in [
                ("/lab/containers", "#containers", "web-dep-3"),
                ("/lab/networks", "#networks", "platform"),
                ("/lab/images", "main", "node:18"),
                ("/lab/registry", "#repositories", "apps/web"),
            ] {
                b.goto(&format!("http://127.0.0.1:8080{path}"), path.trim_start_matches("/lab/")).await?;
                let text = b.text(css).await?;
                if !text.contains(expect) {
                    return Err(format!("{path} does not show {expect}: {text}"));
                }
            }
            // A phone's width: nothing wider than the screen but the tables' own scrolling.
            b.client.set_window_size(390, 844).await.map_err(fail)?;
            for path in ["/", "/apps/web", "/lab/containers"] {
                b.goto(&format!("http://127.0.0.1:8080{path}"), "phone").await?;
                let wide = b.client.execute("return [document.documentElement.scrollWidth, window.innerWidth]", vec![]).await.map_err(fail)?;
                if wide[0].as_i64() > wide[1].as_i64() {
                    return Err(format!("{path} is wider than a phone's screen: {wide}"));
                }
            }
            Ok(())
        };
        let result = steps.await;
        (b, result)
    });
}

#[test]
fn console_from_another_host_needs_the_token_and_refuses_forms_from_other_sites() {
    with_console("signin", |mut b, dir| async move {
        let steps = async {
            let token = std::fs::read_to_string(dir.join("root/paas/api.token")).map_err(fail)?;
            b.goto("http://192.0.2.10:8080/lab/networks", "login").await?;
            if !b.url().await.contains("/login?next=") {
                return Err(format!("not sent to sign in: {}", b.url().await));
            }
            b.fill("#token", "not-the-token").await?;
            b.click("#sign-in").await?;
            let error = b.text("#error").await?;
            b.shot("login-refused").await;
            if !error.contains("not the API token") {
                return Err(format!("a wrong token: {error}"));
            }
            b.fill("#token", token.trim()).await?;
            b.click("#sign-in").await?;
            b.wait_text("h1", Duration::from_secs(5), |t| t == "Networks").await?;
            b.shot("signed-in").await;
            // The session cookie is out of the page's reach.
            let cookies = b.client.execute("return document.cookie", vec![]).await.map_err(fail)?;
            if cookies != json!("") {
                return Err(format!("the page can read the cookie: {cookies}"));
            }
            let cookie = b.client.get_named_cookie("shibafu_session").await.map_err(fail)?;
            if cookie.http_only() != Some(true) || format!("{:?}", cookie.same_site()) != "Some(Strict)" {
                return Err(format!("the cookie is not HttpOnly and SameSite=Strict: {cookie:?}"));
            }
            // Another site's page posting to the console is refused, cookie or not.
            let evil = dir.join("evil.html");
            std::fs::write(&evil, "<form id=f method=post action='http://192.0.2.10:8080/apps/web/rollback'><input name=csrf value=x></form><script>document.getElementById('f').submit()</script>").map_err(fail)?;
            b.goto(&format!("file://{}", evil.display()), "cross-site").await?;
            let refused = b.wait_text("#error", Duration::from_secs(5), |t| !t.is_empty()).await?;
            if !refused.contains("another site") && !refused.contains("Sign in") {
                return Err(format!("a cross-site form was not refused: {refused}"));
            }
            // Even from loopback, a form needs its CSRF token, and another site's Origin is refused.
            for (headers, body) in [("", "csrf=wrong"), ("", ""), ("Origin: http://evil.example\r\n", "csrf=wrong")] {
                let status = post("/apps/web/rollback", headers, body);
                if !status.contains(" 403 ") && !status.contains(" 422 ") {
                    return Err(format!("a form with {headers:?} {body:?} was let through: {status}"));
                }
            }
            b.goto("http://192.0.2.10:8080/", "apps-signed-in").await?;
            b.click("nav button").await?;
            b.wait_text("h1", Duration::from_secs(5), |t| t == "Sign in").await?;
            b.goto("http://192.0.2.10:8080/", "signed-out").await?;
            if !b.url().await.contains("/login") {
                return Err("after signing out the console still opens".into());
            }
            Ok(())
        };
        let result = steps.await;
        (b, result)
    });
}
