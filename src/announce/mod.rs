//! Route announcement for active-active LB hosts: while the proxy has enough healthy
//! backends, the VIPs are host routes `ADDRESS dev INTERFACE table TABLE proto PROTOCOL` in
//! a kernel table that a routing daemon (BIRD 2) exports to the routers by BGP; when it has
//! too few, or the process stops, the routes are deleted. apilb does not speak BGP.
//!
//! - [`gate`]: the pure decision (Up count, threshold, hold; time passed in).
//! - [`host`]: what the host must offer (the interface, the ARP sysctls, CAP_NET_ADMIN),
//!   checked purely from facts the edge gathers.
//! - [`task`]: the control-plane part that subscribes to the backend view, feeds the gate
//!   and writes the routes through [`crate::netlink`]; [`Announcer`] is its handle.
//!
//! Who runs it: [`crate::control`], beside (never together with) the VRRP [`crate::vip`].
//! On SIGTERM the routes are deleted first, then `withdrawDelay` passes, then the proxy
//! drains. `apilb announce --withdraw` ([`withdraw`]) deletes them after a crash.

pub mod gate;
pub mod host;
pub mod task;

use std::io;

pub use task::{AnnounceStatus, Announcer, check_host, withdraw};

/// Why announcing could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `announce.interface` names no interface in this network namespace.
    #[error("announce.interface: interface \"{0}\" does not exist")]
    NoInterface(String),
    /// The host cannot announce as configured (a sysctl, a capability, the interface);
    /// every problem is listed, each naming what to change.
    #[error("announce (on {interface}): {}", problems.join("; "))]
    Host {
        /// `announce.interface`.
        interface: String,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// rtnetlink could not be opened.
    #[error("announce: opening rtnetlink: {0}")]
    Open(io::Error),
    /// A netlink request failed.
    #[error("announce: {0}")]
    Netlink(crate::netlink::Error),
}

impl From<crate::netlink::Error> for Error {
    fn from(e: crate::netlink::Error) -> Self {
        match e {
            crate::netlink::Error::NoInterface(name) => Error::NoInterface(name),
            e => Error::Netlink(e),
        }
    }
}

impl Error {
    /// Whether the config (or the host it meets) is at fault: the config exit code.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::NoInterface(_) | Error::Host { .. })
    }
}
