//! What the two YAML files an operator writes (the LB config and the cluster description)
//! share: one positioned problem list, reported as `file:line:col: key.path: problem`, every
//! problem at once; a serde pass that reports each unknown key without hiding the others;
//! and the value rules both files use: `host:port`, DNS names (RFC 1123, case-insensitive),
//! CIDRs (via `ipnet`) and durations.
//!
//! Everything here is pure: text in, values or problems out. Reading files is the callers'.

mod duration;
mod locate;
mod net;
mod problem;
mod scalar;
mod serde_pass;

pub use duration::{DurationError, format_duration, parse_duration};
pub(crate) use locate::Locations;
pub use locate::Position;
pub use net::{
    AddressError, Cidr, CidrError, Host, NameError, dns_name, host_port, prefixed, socket_addr,
};
pub(crate) use problem::Collector;
pub use problem::{Problem, Problems};
pub use scalar::Scalar;
pub(crate) use serde_pass::deserialize;
