//! `proxy serve`: an HTTP reverse proxy that routes by Host header to containers.
//! `NAME.localhost` (and `NAME.DOMAIN` for each `--domain`) goes to container NAME's address and
//! port. Routes follow containers as they start and stop: a thread watches the state database
//! and swaps the table. Connections to containers are kept alive and reused; bodies stream
//! through both ways; WebSocket upgrades become a relay.

mod body;
mod forward;
mod message;
pub mod routes;
mod server;
#[cfg(test)]
mod tests;
mod upstream;

pub use server::{serve, ProxyOptions};
