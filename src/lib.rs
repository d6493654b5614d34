//! shibafu: a container lab appliance, from an OCI runtime up to a small PaaS.
//! The module map and its rules live in DESIGN.md ("The house").

pub mod cli;
pub mod dns;
pub mod engine;
pub mod explain;
pub mod fault;
pub mod http_server;
pub mod image;
pub mod lab;
pub mod network;
pub mod paas;
pub mod proxy;
pub mod registry;
pub mod runtime;
pub mod safepath;
pub mod state;
pub mod storage;
pub mod template;
