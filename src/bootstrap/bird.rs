//! `DIR/<lb-host>/bird.conf`: BIRD 2 on an LB host with `loadBalancer.bgp`. apilb itself
//! never speaks BGP: it writes the VIP route into a kernel table while its proxy is healthy
//! (the `announce:` section), and BIRD carries that route to the routers.
//!
//! The file: a kernel protocol per VIP family that learns apilb's routes (table
//! [`ANNOUNCE_TABLE`], protocol [`ANNOUNCE_PROTOCOL`], the VIPs only) into BIRD's own table;
//! BFD (100 ms, multiplier 3) when `bfd` is on; one BGP session per router exporting only
//! the VIP routes of the router's address family, importing nothing, graceful restart off
//! (a host that stops announcing must lose its traffic at once, not after a restart
//! timer), hold time [`HOLD_TIME_SECS`], and the TCP-MD5 password when given.
//!
//! The password is read here, at bootstrap time ([`read_password`]), from the file the
//! description names; it goes into `bird.conf` (written 0600) and nowhere else, and its
//! `Debug` form is redacted.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::cluster::{Bgp, Cluster, Node};

/// The file name in each LB host's directory.
pub const BIRD_FILE: &str = "bird.conf";
/// Where Debian's bird2 package reads its configuration.
pub const BIRD_CONF_PATH: &str = "/etc/bird/bird.conf";
/// The kernel routing table apilb writes the VIP routes into (`announce.table`, which
/// bootstrap writes as this default).
pub const ANNOUNCE_TABLE: u32 = crate::config::DEFAULT_ANNOUNCE_TABLE;
/// The route protocol number apilb's routes carry (`announce.protocol`, likewise).
pub const ANNOUNCE_PROTOCOL: u8 = crate::config::DEFAULT_ANNOUNCE_PROTOCOL;
/// BGP hold time: a router that hears nothing for this long drops the session (BFD is
/// the fast path; this bounds detection without it).
pub const HOLD_TIME_SECS: u32 = 9;
/// BFD transmit/receive interval, and the missed packets that declare a session down.
pub const BFD_INTERVAL_MS: u32 = 100;
/// See [`BFD_INTERVAL_MS`].
pub const BFD_MULTIPLIER: u32 = 3;
/// Linux's TCP_MD5SIG_MAXKEYLEN.
pub const PASSWORD_MAX_LEN: usize = 80;

/// The TCP-MD5 password, as read from its file (without the trailing line break).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why `loadBalancer.bgp.password` could not be used; never shows the password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The file could not be read.
    #[error("loadBalancer.bgp.password: cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a `source`, so it is printed once).
        error: std::io::Error,
    },
    /// The file is empty (or only a line break).
    #[error("loadBalancer.bgp.password: {} is empty; write the TCP-MD5 password into it", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A character a BIRD string cannot carry.
    #[error(
        "loadBalancer.bgp.password: {} holds a double quote, a backslash or a control character, which a BIRD string cannot carry",
        path.display()
    )]
    Unquotable {
        /// The file.
        path: PathBuf,
    },
    /// Longer than the kernel takes.
    #[error(
        "loadBalancer.bgp.password: {} holds {len} bytes; TCP-MD5 takes at most {PASSWORD_MAX_LEN}",
        path.display()
    )]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

/// Read the password file: one line; a single trailing line break is dropped.
pub fn read_password(path: &Path) -> Result<Password, PasswordError> {
    let text = std::fs::read_to_string(path).map_err(|error| PasswordError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse_password(path, &text)
}

fn parse_password(path: &Path, text: &str) -> Result<Password, PasswordError> {
    let p = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if p.is_empty() {
        return Err(PasswordError::Empty {
            path: path.to_owned(),
        });
    }
    if p.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(PasswordError::Unquotable {
            path: path.to_owned(),
        });
    }
    if p.len() > PASSWORD_MAX_LEN {
        return Err(PasswordError::TooLong {
            path: path.to_owned(),
            len: p.len(),
        });
    }
    Ok(Password(p.to_owned()))
}

/// BIRD's router id for a host: its IPv4 address, or the low 32 bits of its IPv6 one
/// (unique enough: the id only has to differ from the routers' own).
pub fn router_id(address: IpAddr) -> Ipv4Addr {
    match address {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Ipv4Addr::new(o[12], o[13], o[14], o[15])
        }
    }
}

/// `[ 10.0.0.100/32 ]`: BIRD's prefix set of the VIPs of one family, if any.
fn vip_set(c: &Cluster, v4: bool) -> Option<String> {
    let nets: Vec<String> = c
        .load_balancer
        .vips
        .iter()
        .filter(|v| v.is_ipv4() == v4)
        .map(|v| format!("{v}/{}", if v4 { 32 } else { 128 }))
        .collect();
    (!nets.is_empty()).then(|| format!("[ {} ]", nets.join(", ")))
}

/// `bird.conf` of the LB host `h` at `index` in `loadBalancer.hosts`.
pub fn config(
    c: &Cluster,
    bgp: &Bgp,
    index: usize,
    h: &Node,
    password: Option<&Password>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# BIRD 2 on {name} ({addr}), generated by `apilb bootstrap` from the cluster description;\n\
         # re-run it rather than editing this file. Install as {BIRD_CONF_PATH}.\n\
         #\n\
         # apilb adds `VIP dev lo table {ANNOUNCE_TABLE} proto {ANNOUNCE_PROTOCOL}` while its proxy is healthy and\n\
         # deletes it when not (and first thing on stop); BIRD learns exactly those routes and\n\
         # announces them to the routers, which spread the VIP's flows over the LB hosts (ECMP).\n\n\
         router id {id};\n",
        name = h.name,
        addr = h.address,
        id = router_id(h.address),
    );
    let families: Vec<(&str, bool, String)> = [("ipv4", true), ("ipv6", false)]
        .into_iter()
        .filter_map(|(f, v4)| vip_set(c, v4).map(|set| (f, v4, set)))
        .collect();
    for (f, _, _) in &families {
        let _ = writeln!(s, "{f} table vip{};", &f[3..]);
    }
    let _ = writeln!(
        s,
        "\n# Interfaces (the VIP routes point at lo).\nprotocol device {{\n}}\n"
    );
    for (f, _, set) in &families {
        let n = &f[3..];
        let _ = writeln!(
            s,
            "# apilb's VIP routes, learned from kernel table {ANNOUNCE_TABLE}; nothing is written back.\n\
             protocol kernel apilb{n} {{\n  kernel table {ANNOUNCE_TABLE};\n  learn;\n  {f} {{\n    table vip{n};\n    \
             import where net ~ {set} && krt_source = {ANNOUNCE_PROTOCOL};\n    export none;\n  }};\n}}\n"
        );
    }
    if bgp.bfd {
        let _ = writeln!(
            s,
            "# BFD: a router notices a dead host (or BIRD) in {} ms.\nprotocol bfd {{\n  interface \"*\" {{\n    interval {BFD_INTERVAL_MS} ms;\n    multiplier {BFD_MULTIPLIER};\n  }};\n}}\n",
            BFD_INTERVAL_MS * BFD_MULTIPLIER
        );
    }
    let asn = bgp.host_asn(index).unwrap_or_default();
    for (i, r) in bgp.routers.iter().enumerate() {
        let local = if r.address.is_ipv4() == h.address.is_ipv4() {
            format!("local {} as {asn}", h.address)
        } else {
            format!("local as {asn}")
        };
        let _ = write!(
            s,
            "protocol bgp router{} {{\n  description \"{} AS {}\";\n  {local};\n  neighbor {} as {};\n",
            i + 1,
            r.address,
            r.asn,
            r.address,
            r.asn
        );
        if bgp.bfd {
            s.push_str("  bfd on;\n");
        }
        let _ = writeln!(s, "  graceful restart off;\n  hold time {HOLD_TIME_SECS};");
        if let Some(p) = password {
            let _ = writeln!(s, "  password \"{}\";", p.0);
        }
        for (f, v4, set) in &families {
            if *v4 == r.address.is_ipv4() {
                let _ = writeln!(
                    s,
                    "  {f} {{\n    table vip{};\n    import none;\n    export where net ~ {set};\n    next hop self;\n  }};",
                    &f[3..]
                );
            }
        }
        s.push_str("}\n\n");
    }
    s.truncate(s.trim_end().len());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_rules() {
        let p = Path::new("/x");
        assert_eq!(
            parse_password(p, "s3cret\n").unwrap(),
            Password("s3cret".into())
        );
        assert_eq!(
            parse_password(p, "s3cret\r\n").unwrap(),
            Password("s3cret".into())
        );
        assert_eq!(
            parse_password(p, "\n").unwrap_err().to_string(),
            "loadBalancer.bgp.password: /x is empty; write the TCP-MD5 password into it"
        );
        for bad in ["a\"b", "a\\b", "a\nb\n", "a\tb"] {
            let e = parse_password(p, bad).unwrap_err().to_string();
            assert!(e.contains("a BIRD string cannot carry"), "{e}");
            assert!(!e.contains(bad), "{e}");
        }
        let long = "x".repeat(81);
        assert_eq!(
            parse_password(p, &long).unwrap_err().to_string(),
            "loadBalancer.bgp.password: /x holds 81 bytes; TCP-MD5 takes at most 80"
        );
        assert_eq!(
            format!("{:?}", Password("s3cret".into())),
            "Password(<redacted>)"
        );
        let e = read_password(Path::new("/nonexistent/bgp-password"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("loadBalancer.bgp.password: cannot read /nonexistent/bgp-password: "),
            "{e}"
        );
    }

    #[test]
    fn router_ids() {
        assert_eq!(
            router_id("10.0.0.5".parse().unwrap()),
            Ipv4Addr::new(10, 0, 0, 5)
        );
        assert_eq!(
            router_id("fd00::a:5".parse().unwrap()),
            Ipv4Addr::new(0, 10, 0, 5)
        );
    }
}
