//! `proxy serve`: an HTTP reverse proxy that routes by Host header to containers.
//! `NAME.localhost` (and `NAME.DOMAIN` for each `--domain`) goes to container NAME's address and
//! port. Routes follow containers as they start and stop: a thread watches the state database
//! and swaps the table. Upstream connections are pooled and kept alive; bodies stream through.

pub mod routes;
mod server;

pub use server::{serve, ProxyOptions};
