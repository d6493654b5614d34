//! The deploy worker: one thread with its own `Engine` that takes deployments from the queue,
//! one at a time, and takes each from its code tree to live (or to failed, with the reason):
//! detect, layer, image, run, check, switch the route, stop the version before. Each step is a
//! line in the deployment's build log, said as a person would do it by hand.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use super::detect::{detect, Plan, Runtime};
use super::{deployment_id, Paas, NETWORK};
use crate::engine::health::HealthFlags;
use crate::engine::restart::RestartPolicy;
use crate::engine::run::{RunOptions, RunOutcome};
use crate::engine::spec::ProcessOverrides;
use crate::engine::Engine;
use crate::image::reference::Reference;
use crate::network::NetworkMode;
use crate::state::containers::{DnsSettings, LogOptions};
use crate::state::paas::DeploymentRow;
use crate::storage::pack::{PackOptions, Whiteouts};

/// How long a new version has to answer its check.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(30);

/// How long after the route switches a deployment is called live, and the version before
/// stops: the proxies look at the state every 100 ms, so by then they all send new requests to
/// the new version, and a request routed before the switch has found the old one still up.
const SETTLE: Duration = Duration::from_millis(300);

/// The reason a deployment left unfinished by the service before gets.
pub const RESTARTED: &str = "the service restarted before the deployment finished";

/// Where a deployment's code tree is built.
pub fn build_dir(root: &Path, id: i64) -> PathBuf {
    Paas::dir(root).join("builds").join(deployment_id(id))
}

/// A deployment's build log.
pub fn log_path(root: &Path, id: i64) -> PathBuf {
    Paas::dir(root).join("logs").join(format!("{}.log", deployment_id(id)))
}

/// The name of the container that runs a deployment.
pub fn container_name(app: &str, id: i64) -> String {
    format!("{app}-{}", deployment_id(id))
}

/// Settles what a service before this one left building or starting: one whose route was
/// switched already goes live (the step after the switch is all it missed); the others fail,
/// and their containers go. Then empties `builds/` and `uploads/`.
pub fn recover(root: &Path) -> anyhow::Result<()> {
    let engine = Engine::open(root)?;
    for dep in engine.db.unfinished_deployments()? {
        let mut log = BuildLog::open(root, dep.id);
        match &dep.container_id {
            Some(cid) if engine.db.route_of(&dep.app)?.as_ref() == Some(cid) => {
                log.line("the route had switched when the service stopped: live");
                finish(&engine, &dep, cid, &mut log)?;
            }
            _ => {
                log.line(&format!("failed: {RESTARTED}"));
                engine.db.set_deployment_status(dep.id, "failed", Some(RESTARTED))?;
                if let Some(cid) = &dep.container_id {
                    remove_container(&engine, cid, &mut log);
                }
            }
        }
    }
    for sub in ["builds", "uploads"] {
        let dir = Paas::dir(root).join(sub);
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
    Ok(())
}

/// Removes the containers of a deleted app (and reaps their monitors) and untags its images
/// (`REGISTRY/apps/APP:*`), so gc can take their layers; the names removed. The registry
/// keeps its copies (`registry gc` after a delete of its tags).
pub fn remove_app(root: &Path, registry: &str, app: &str, containers: &[String]) -> anyhow::Result<Vec<String>> {
    let engine = Engine::open(root)?;
    let mut log = BuildLog { file: None, id: 0 };
    let mut removed = Vec::new();
    for id in containers {
        if let Ok(c) = engine.find(id) {
            remove_container(&engine, id, &mut log);
            removed.push(c.name);
        }
    }
    let store = engine.images();
    let repo = Paas::repository(registry, app);
    for image in engine.db.images()?.into_iter().filter(|i| i.name == repo) {
        store.remove(&image, 0)?;
        removed.push(image.reference());
    }
    Ok(removed)
}

/// What the worker needs besides its queue.
struct Worker {
    engine: Engine,
    sealer: super::secrets::Sealer,
    domain: String,
    registry: String,
}

/// Runs the queue until the API side goes.
pub fn worker(opts: &super::PaasOptions, queue: Receiver<i64>) {
    let root = &opts.root;
    let opened = Engine::open(root).map_err(|e| e.to_string()).and_then(|engine| {
        let sealer = super::secrets::Sealer::open(&Paas::key_file(root)).map_err(|e| format!("the secrets key: {e}"))?;
        Ok(Worker { engine, sealer, domain: opts.domain.clone(), registry: opts.registry.clone() })
    });
    let worker = match opened {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("shibafu paas: the deploy worker cannot start on {}: {e}", root.display());
            std::process::exit(1);
        }
    };
    for id in queue {
        deploy(&worker, id);
    }
}

/// A deployment's build log: one line per step, with its time.
pub struct BuildLog {
    file: Option<std::fs::File>,
    id: i64,
}

impl BuildLog {
    /// Opens (appending) deployment `id`'s log.
    pub fn open(root: &Path, id: i64) -> BuildLog {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log_path(root, id)).ok();
        BuildLog { file, id }
    }

    /// Appends a line (and says it on the service's stderr).
    pub fn line(&mut self, text: &str) {
        eprintln!("shibafu paas: {}: {text}", deployment_id(self.id));
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{} {text}", crate::state::now());
        }
    }
}

/// Why a deployment failed, and the container it had made by then.
struct Failure {
    reason: String,
    container: Option<String>,
}

fn failed(step: &str) -> impl Fn(String) -> Failure + '_ {
    move |e| Failure { reason: format!("{step}: {e}"), container: None }
}

/// Takes deployment `id` to live or to failed; never panics the worker.
fn deploy(worker: &Worker, id: i64) {
    let engine = &worker.engine;
    let root = engine.root.clone();
    let mut log = BuildLog::open(&root, id);
    let outcome = match engine.db.deployment(id) {
        Ok(Some(dep)) => go(worker, &dep, &mut log),
        Ok(None) => return,
        Err(e) => Err(Failure { reason: format!("read the deployment: {e}"), container: None }),
    };
    if let Err(failure) = outcome {
        log.line(&format!("failed: {}", failure.reason));
        if let Some(cid) = &failure.container {
            remove_container(engine, cid, &mut log);
        }
        if let Err(e) = engine.db.set_deployment_status(id, "failed", Some(&failure.reason)) {
            eprintln!("shibafu paas: {}: record the failure: {e}", deployment_id(id));
        }
    }
    let _ = std::fs::remove_dir_all(build_dir(&root, id));
}

fn go(worker: &Worker, dep: &DeploymentRow, log: &mut BuildLog) -> Result<(), Failure> {
    let engine = &worker.engine;
    let image = match &dep.image {
        // A release of an image built before (a config change, a rollback): no build.
        Some(image) => {
            log.line(&format!("{}: the image {image} again, no build", dep.source));
            image.clone()
        }
        None => {
            let runtime = Runtime::parse(&dep.runtime).map_err(failed("runtime"))?;
            let dir = build_dir(&engine.root, dep.id);
            let plan = detect(&dir.join("app"), &runtime, dep.command.as_deref(), dep.port).map_err(failed("detect"))?;
            log.line(&format!("runtime {} on image {}; command {:?} ({})", dep.runtime, runtime.image(), plan.command, plan.why));
            let deps = super::deps::prepare(&dir.join("app"), &runtime).map_err(failed("dependencies"))?;
            for line in &deps.log {
                log.line(line);
            }
            let image = build(engine, &worker.registry, dep, &runtime, &plan, &deps.env, log).map_err(failed("build"))?;
            push(engine, &worker.registry, dep, &image, log).map_err(failed("push"))?;
            image
        }
    };
    let mut secrets = Vec::new();
    for (name, sealed) in &dep.secrets {
        secrets.push((name.clone(), worker.sealer.unseal(&dep.app, name, sealed).map_err(failed("secrets"))?));
    }
    let cid = start(engine, dep, &image, &secrets, log).map_err(failed("run"))?;
    let fail_here = |reason: String| Failure { reason, container: Some(cid.clone()) };
    engine.db.set_deployment_container(dep.id, &cid).map_err(|e| fail_here(e.to_string()))?;
    check(engine, &worker.domain, dep, &cid, log).map_err(|e| fail_here(format!("health check: {e}")))?;
    switch(engine, dep, &cid, log).map_err(|e| fail_here(format!("go live: {e}")))
}

/// Packs the code tree (and the plan's files) as a layer on top of the runtime's image, and
/// stores the image as `REGISTRY/apps/APP:dep-N`; its reference.
fn build(engine: &Engine, registry: &str, dep: &DeploymentRow, runtime: &Runtime, plan: &Plan, env: &[String], log: &mut BuildLog) -> Result<String, String> {
    let base = engine.image_or_pull(runtime.image()).map_err(|e| format!("the runtime image {}: {e}", runtime.image()))?;
    let dir = build_dir(&engine.root, dep.id);
    if *runtime == Runtime::Static {
        // nginx's workers run as www-data: the tree must be readable by all.
        readable_by_all(&dir.join("app")).map_err(|e| format!("make the site readable: {e}"))?;
    }
    for (path, text) in &plan.extra_files {
        write_inside(&dir, path, text)?;
    }
    let store = engine.images();
    let _adding = store.lock_layers(false).map_err(|e| e.to_string())?;
    log.line(&format!("tar -C {} -c . | gzip  # the code as /app, one layer (mtimes 0: the same code gives the same digest)", dir.display()));
    let layer = store.pack_layer(&dir, PackOptions { keep_mtime: false, whiteouts: Whiteouts::Drop, ids: None }).map_err(|e| e.to_string())?;
    let mut layers = Vec::new();
    for d in &base.layers {
        layers.push(engine.db.layer(d).map_err(|e| e.to_string())?.ok_or_else(|| format!("layer {d} of {} is no longer stored", runtime.image()))?);
    }
    layers.push(layer.clone());
    let mut config = store.config(&base).map_err(|e| e.to_string())?;
    if !plan.command.is_empty() {
        config.entrypoint = vec![];
        config.cmd = plan.command.clone();
    }
    config.working_dir = "/app".into();
    if config.env.is_empty() && !env.is_empty() {
        config.env.push(format!("PATH={}", crate::runtime::process::DEFAULT_PATH));
    }
    config.env.extend(env.iter().cloned());
    let reference = Reference { name: Paas::repository(registry, &dep.app), tag: deployment_id(dep.id) };
    let image = store.store_image(&reference, &layers, &config, &format!("shibafu paas build {}", deployment_id(dep.id))).map_err(|e| e.to_string())?;
    let command = if config.entrypoint.is_empty() { config.cmd.clone() } else { [config.entrypoint.clone(), config.cmd.clone()].concat() };
    engine.db.set_deployment_image(dep.id, &reference.to_string(), &image.manifest_digest, &command).map_err(|e| e.to_string())?;
    log.line(&format!("image {reference} ({}): {} layers, the code layer {}", image.manifest_digest, layers.len(), layer.blob_digest));
    Ok(reference.to_string())
}

/// Pushes the image to the registry it is named after (blobs it has already are not sent).
fn push(engine: &Engine, registry: &str, dep: &DeploymentRow, image: &str, log: &mut BuildLog) -> Result<(), String> {
    let store = engine.images();
    let row = store.resolve(image).map_err(|e| e.to_string())?;
    let target = crate::image::distribution::RemoteRef { host: registry.to_string(), repo: format!("apps/{}", dep.app), tag: deployment_id(dep.id) };
    log.line(&format!("shibafu push {image} {image}"));
    let digest = store.push(&row, &target).map_err(|e| format!("{e} (the registry at {registry}: is `shibafu registry serve` running?)"))?;
    log.line(&format!("pushed {image} ({digest})"));
    Ok(())
}

/// Runs the image on the platform network with its env, secrets and `PORT`, restarted always;
/// the container's id. The secrets' names are the label `shibafu.secret-env`, so `inspect`
/// shows no value of theirs.
fn start(engine: &Engine, dep: &DeploymentRow, image: &str, secrets: &[(String, String)], log: &mut BuildLog) -> Result<String, String> {
    let name = container_name(&dep.app, dep.id);
    if let Ok(stale) = engine.find(&name) {
        // A run of this deployment that a killed worker left behind.
        remove_container(engine, &stale.id, log);
    }
    let mut env = vec![format!("PORT={}", dep.port)];
    env.extend(dep.env.iter().map(|(k, v)| format!("{k}={v}")));
    env.extend(secrets.iter().map(|(k, v)| format!("{k}={v}")));
    let secret_names: Vec<&str> = secrets.iter().map(|(k, _)| k.as_str()).collect();
    let mut labels = vec![("shibafu.paas.app", dep.app.clone()), ("shibafu.paas.deployment", deployment_id(dep.id))];
    if !secret_names.is_empty() {
        labels.push((crate::engine::SECRET_ENV_LABEL, secret_names.join(",")));
    }
    let labels = labels.into_iter().map(|(k, v)| (k.to_string(), v));
    let opts = RunOptions {
        image: image.into(),
        layers: None,
        command: vec![],
        name: Some(name.clone()),
        detach: true,
        env,
        remove: false,
        runtime: crate::engine::oci::BUILTIN.into(),
        limits: Default::default(),
        network: NetworkMode::Bridges(vec![NETWORK.into()]),
        publish: vec![],
        hostname: Some(name.clone()),
        aliases: vec![],
        restart: RestartPolicy::Always,
        health: HealthFlags::default(),
        log_opts: LogOptions::default(),
        mounts: vec![],
        process: ProcessOverrides { labels: labels.collect(), ..Default::default() },
        userns: Default::default(),
        tty: false,
        interactive: false,
        extra_hosts: vec![],
        dns: DnsSettings::default(),
    };
    let env_names: Vec<&str> = dep.env.keys().map(String::as_str).chain(secret_names.iter().copied()).collect();
    log.line(&format!("shibafu run -d --name {name} --network {NETWORK} --restart always -e PORT={} {}{image}", dep.port, env_names.iter().map(|k| format!("-e {k}=... ")).collect::<String>()));
    match engine.run(&opts).map_err(|e| e.to_string())? {
        RunOutcome::Started { id, .. } => Ok(id),
        RunOutcome::Exited(code) => Err(format!("the container exited at once with {code}")),
    }
}

/// Waits for the new container to answer on its port, as the proxy will reach it.
fn check(engine: &Engine, domain: &str, dep: &DeploymentRow, cid: &str, log: &mut BuildLog) -> Result<(), String> {
    let lease = engine.db.leases_of(cid).map_err(|e| e.to_string())?.into_iter().next().ok_or("the container has no address")?;
    let ip: std::net::Ipv4Addr = lease.address.parse().map_err(|_| format!("bad address {}", lease.address))?;
    let addr = std::net::SocketAddr::from((ip, dep.port));
    let host = format!("{}.{domain}", dep.app);
    log.line(&format!("curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {host}' http://{addr}{}  # until 2xx or 3xx, at most {} s", dep.health_path, HEALTH_DEADLINE.as_secs()));
    let gone = || crashed(engine, cid);
    let status = super::probe::until_healthy(addr, &dep.health_path, &host, HEALTH_DEADLINE, gone)?;
    log.line(&format!("the app answered {status}"));
    Ok(())
}

/// Whether the container exited (or restarted) since it started.
fn crashed(engine: &Engine, cid: &str) -> bool {
    match engine.db.containers_by_id(cid).ok().and_then(|mut rows| rows.pop()) {
        Some(c) => c.restart_count > 0 || !engine.is_active(&c),
        None => true,
    }
}

/// Switches the app's route to the new container; once the proxies have followed, the
/// deployment is live and the container before stops and goes.
fn switch(engine: &Engine, dep: &DeploymentRow, cid: &str, log: &mut BuildLog) -> Result<(), String> {
    engine.db.switch_route(&dep.app, cid, dep.port).map_err(|e| e.to_string())?;
    log.line(&format!("the route {} now goes to container {} (the proxies look every 100 ms)", dep.app, &cid[..12]));
    std::thread::sleep(SETTLE);
    finish(engine, dep, cid, log).map_err(|e| e.to_string())
}

/// Marks a switched deployment live and removes the container of the one before, on a
/// thread of its own: its grace before SIGKILL must not hold up the next deployment.
fn finish(engine: &Engine, dep: &DeploymentRow, cid: &str, log: &mut BuildLog) -> crate::state::Result<()> {
    let before = engine.db.go_live(&dep.app, dep.id)?;
    log.line("live");
    if let Some(old) = before.and_then(|b| b.container_id).filter(|old| old != cid) {
        let (root, id) = (engine.root.clone(), dep.id);
        std::thread::spawn(move || match Engine::open(&root) {
            Ok(engine) => remove_container(&engine, &old, &mut BuildLog::open(&root, id)),
            Err(e) => eprintln!("shibafu paas: {}: remove the version before: {e}", deployment_id(id)),
        });
    }
    Ok(())
}

/// How long a version that is replaced has to exit on SIGTERM before SIGKILL. It serves no
/// new request by then; and an app that runs as PID 1 without a SIGTERM handler of its own (node,
/// as under Docker without --init) never exits on SIGTERM, so a long grace only delays.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Stops (SIGTERM, then SIGKILL after `STOP_GRACE`) and removes a container, and reaps its
/// monitor, which this process started; says so in the log.
fn remove_container(engine: &Engine, id: &str, log: &mut BuildLog) {
    let Ok(c) = engine.find(id) else { return };
    let _ = engine.stop(id, STOP_GRACE);
    match engine.rm(id, true, false) {
        Ok(()) => log.line(&format!("shibafu rm -f {}", c.name)),
        Err(e) => log.line(&format!("remove {}: {e}", c.name)),
    }
    if let Some(pid) = c.monitor_pid {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
}

/// Writes `text` at `path` (absolute, inside the container) under `dir`, refusing any `..`.
fn write_inside(dir: &Path, path: &Path, text: &str) -> Result<(), String> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("{} is not a plain path", path.display()));
    }
    let dest = dir.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    std::fs::write(&dest, text).map_err(|e| format!("write {}: {e}", dest.display()))
}

/// `chmod -R a+rX`: files readable by all, directories readable and searchable; links are left
/// as they are (the code check refused any that leave the tree).
fn readable_by_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            continue;
        }
        let path = entry.path();
        let mode = entry.metadata()?.permissions().mode();
        let add = if kind.is_dir() || mode & 0o111 != 0 { 0o555 } else { 0o444 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | add))?;
        if kind.is_dir() {
            readable_by_all(&path)?;
        }
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o555))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_a_plan_land_inside_the_build_dir_only() {
        let dir = tempfile::tempdir().unwrap();
        write_inside(dir.path(), Path::new("/etc/shibafu/nginx.conf"), "x").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/shibafu/nginx.conf")).unwrap(), "x");
        assert!(write_inside(dir.path(), Path::new("/etc/../../x"), "x").is_err());
    }

    #[test]
    fn a_site_becomes_readable_by_all() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), "x").unwrap();
        std::fs::set_permissions(dir.path().join("d/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path().join("d"), std::fs::Permissions::from_mode(0o700)).unwrap();
        readable_by_all(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("d/f")).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::metadata(dir.path().join("d")).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn containers_are_named_after_the_app_and_deployment() {
        assert_eq!(container_name("web", 12), "web-dep-12");
    }
}
