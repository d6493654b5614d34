//! The OCI runtime (phases 0 and 1): takes a bundle, exactly like runc, and knows nothing of
//! images, networks or the database.

pub mod bpf;
pub mod capabilities;
pub mod cgroups;
pub mod container;
pub mod device_filter;
pub mod devices;
pub mod error;
pub mod exec;
pub mod foreground;
pub mod hooks;
pub mod init;
pub mod loopback;
pub mod mount_options;
pub mod namespaces;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sync;
pub mod tty;
pub mod user;
pub mod userns;

pub use container::{CreateOptions, Created, Runtime};
pub use error::RuntimeError;
