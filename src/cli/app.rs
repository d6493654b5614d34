//! `app ...`: the PaaS from the command line, over its API (`paas serve`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use crate::paas::client::{Client, Part};
use crate::storage::pack::{pack_dir, PackOptions, Whiteouts};

/// Where the API is.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The API's base URL.
    #[arg(long, env = "SHIBAFU_PAAS_API", default_value = "http://127.0.0.1:8080", global = true)]
    api: String,
    /// The token for an API on another host (paas/api.token under its data root).
    #[arg(long, env = "SHIBAFU_PAAS_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

/// `app ...`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Deploy a directory (packed as tar.gz) or an archive as app NAME, and follow the build.
    Deploy {
        /// A directory, or a tar / tar.gz.
        path: PathBuf,
        /// The app's name (a DNS label: it answers as NAME.platform.local).
        #[arg(long)]
        name: String,
        /// node:18, python:3.11, static, or an image reference.
        #[arg(long)]
        runtime: String,
        /// KEY=VALUE of the app's environment (repeatable).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// KEY=VALUE of a secret (repeatable; sealed at rest, never shown).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// The port the app listens on ($PORT).
        #[arg(long)]
        port: Option<u16>,
        /// The path the health check asks for.
        #[arg(long)]
        health_path: Option<String>,
        /// Run this (through /bin/sh -c) instead of what the code suggests.
        #[arg(long)]
        command: Option<String>,
        /// Return once the deployment is queued.
        #[arg(short, long)]
        detach: bool,
    },
    /// List the apps.
    #[command(alias = "ls")]
    List,
    /// An app's status, health and restarts (JSON).
    Status {
        /// The app.
        name: String,
    },
    /// An app's deployments, newest first.
    History {
        /// The app.
        name: String,
    },
    /// The live version's log.
    Logs {
        /// The app.
        name: String,
        /// Keep printing what comes.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Go back to the release before (or --to dep-N): its image and config, no build.
    Rollback {
        /// The app.
        name: String,
        /// The deployment to go back to.
        #[arg(long)]
        to: Option<String>,
        /// Return once the deployment is queued.
        #[arg(short, long)]
        detach: bool,
    },
    /// Remove an app: its containers, route, history and images.
    Rm {
        /// The app.
        name: String,
    },
}

/// Runs an `app` command.
pub fn app(api: ApiArgs, cmd: AppCommand) -> Result<i32> {
    let client = Client::new(&api.api, api.token)?;
    match cmd {
        AppCommand::Deploy { path, name, runtime, env, secrets, port, health_path, command, detach } => {
            let mut parts = vec![Part::Text("app_name".into(), name), Part::Text("runtime".into(), runtime)];
            for (kind, list) in [("env", env), ("secret", secrets)] {
                for kv in list {
                    let Some((k, v)) = kv.split_once('=') else { bail!("--{kind} {kv:?}: give KEY=VALUE") };
                    parts.push(Part::Text(format!("{kind}[{k}]"), v.into()));
                }
            }
            let optional = [("port", port.map(|p| p.to_string())), ("health_path", health_path), ("command", command)];
            parts.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| Part::Text(k.into(), v))));
            parts.push(code(&path)?);
            let answer = client.post_form("/api/deploy", &parts)?;
            follow(&client, &answer, detach)
        }
        AppCommand::List => {
            let apps = client.get("/api/apps")?;
            println!("{:<20} {:<11} {:<10} {:<10} URL", "NAME", "STATUS", "LIVE", "HEALTH");
            for a in apps.as_array().into_iter().flatten() {
                let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
                println!("{:<20} {:<11} {:<10} {:<10} {}", s("name"), s("status"), s("live_deployment"), s("health"), s("url"));
            }
            Ok(0)
        }
        AppCommand::Status { name } => print_json(&client.get(&format!("/api/apps/{name}"))?),
        AppCommand::History { name } => {
            for d in client.get(&format!("/api/apps/{name}/deployments"))?.as_array().into_iter().flatten() {
                let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
                let reason = d.get("reason").and_then(Value::as_str).map(|r| format!("  ({r})")).unwrap_or_default();
                println!("{:<8} {:<11} {}  {:<24} {}{reason}", s("deployment_id"), s("status"), s("created_at"), s("source"), s("image_digest"));
            }
            Ok(0)
        }
        AppCommand::Logs { name, follow, tail } => {
            let tail = tail.map(|n| format!("&tail={n}")).unwrap_or_default();
            client.stream(&format!("/api/apps/{name}/logs?follow={follow}{tail}"), &mut std::io::stdout())?;
            Ok(0)
        }
        AppCommand::Rollback { name, to, detach } => {
            let to = to.map(|t| format!("?to={t}")).unwrap_or_default();
            let answer = client.json(Method::POST, &format!("/api/apps/{name}/rollback{to}"), None, Vec::new())?;
            follow(&client, &answer, detach)
        }
        AppCommand::Rm { name } => print_json(&client.json(Method::DELETE, &format!("/api/apps/{name}"), None, Vec::new())?),
    }
}

fn print_json(v: &Value) -> Result<i32> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(0)
}

/// The `code` part: a directory packed as tar.gz (as `prepare-layer` packs it), or the file.
fn code(path: &std::path::Path) -> Result<Part> {
    if path.is_dir() {
        let mut bytes = Vec::new();
        pack_dir(path, PackOptions { keep_mtime: true, whiteouts: Whiteouts::AsIs, ids: None }, &mut bytes)?;
        return Ok(Part::File("code".into(), "app.tar.gz".into(), bytes));
    }
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
    let name = path.file_name().map_or("app.tar.gz".into(), |n| n.to_string_lossy().into_owned());
    Ok(Part::File("code".into(), name, bytes))
}

/// Prints the answer, then (unless `detach`) waits until the deployment is live (0) or failed
/// (1, with its reason); with `--explain`, its log as it grows: each step as a person would
/// take it by hand (why this command, the layer, the push, the run, the check as a curl, the
/// route switched).
fn follow(client: &Client, answer: &Value, detach: bool) -> Result<i32> {
    println!("{answer}");
    let Some(id) = answer.get("deployment_id").and_then(Value::as_str) else { return Ok(0) };
    if detach {
        return Ok(0);
    }
    let mut shown = 0;
    loop {
        let d = client.get(&format!("/api/deployments/{id}"))?;
        let lines: Vec<&str> = d.get("log").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        if crate::explain::enabled() {
            for line in lines.iter().skip(shown) {
                eprintln!("+ {}", line.split_once(' ').map_or(*line, |(_, step)| step));
            }
        }
        shown = shown.max(lines.len());
        match d.get("status").and_then(Value::as_str) {
            Some("live") => {
                println!("{id} is live: {}", d.get("url").and_then(Value::as_str).unwrap_or_default());
                return Ok(0);
            }
            Some("failed") => {
                eprintln!("{id} failed: {}", d.get("reason").and_then(Value::as_str).unwrap_or("?"));
                return Ok(1);
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
