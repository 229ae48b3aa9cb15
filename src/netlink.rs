//! rtnetlink, the one place apilb talks to the kernel's interfaces, addresses and routing
//! tables: read an interface and its addresses, add and remove addresses, and add, delete
//! and list host routes of one table and protocol. Used by [`crate::vip`] (addresses) and
//! [`crate::announce`] (addresses and routes). Nothing here decides anything; every change
//! needs CAP_NET_ADMIN.

use std::io;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use crate::config::VipAddress;

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No interface of that name in this network namespace.
    #[error("interface \"{0}\" does not exist")]
    NoInterface(String),
    /// A request failed.
    #[error("{what} (on {interface}): {error}")]
    Request {
        /// The interface.
        interface: String,
        /// Which step.
        what: &'static str,
        /// The error.
        error: io::Error,
    },
}

/// What the kernel says about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// ifindex.
    pub index: u32,
    /// Hardware address (zero if none).
    pub mac: [u8; 6],
    /// Administratively up with carrier.
    pub up: bool,
    /// Every address on it, primary first as the kernel lists them.
    pub addresses: Vec<VipAddress>,
}

/// A host route `ADDRESS dev INDEX table TABLE proto PROTOCOL`: the route form
/// [`crate::announce`] writes and a routing daemon exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostRoute {
    /// The destination, as a /32 or /128.
    pub address: IpAddr,
    /// The output interface's index.
    pub index: u32,
    /// Routing table.
    pub table: u32,
    /// Route protocol number.
    pub protocol: u8,
}

/// Open rtnetlink: the connection (a future the caller drives while the handle is used)
/// and the handle requests go through.
pub fn connect() -> io::Result<(impl Future<Output = ()> + Send + 'static, rtnetlink::Handle)> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    Ok((conn, handle))
}

fn request_error(interface: &str, what: &'static str, e: impl ToString) -> Error {
    Error::Request {
        interface: interface.to_owned(),
        what,
        error: io::Error::other(e.to_string()),
    }
}

/// What the kernel says about `name`: index, MAC, addresses, whether it is up.
pub async fn interface(handle: &rtnetlink::Handle, name: &str) -> Result<Interface, Error> {
    let link = handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
        .map_err(|_| Error::NoInterface(name.to_owned()))?
        .ok_or_else(|| Error::NoInterface(name.to_owned()))?;
    let index = link.header.index;
    let up =
        link.header.flags.contains(LinkFlags::Up) && link.header.flags.contains(LinkFlags::LowerUp);
    let mut mac = [0u8; 6];
    for attr in &link.attributes {
        if let LinkAttribute::Address(bytes) = attr {
            if bytes.len() == 6 {
                mac.copy_from_slice(bytes);
            }
        }
    }
    let mut addresses = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| request_error(name, "reading the interface", e))?
    {
        if let Some(ip) = address_of(&msg) {
            addresses.push(VipAddress {
                ip,
                prefix: msg.header.prefix_len,
            });
        }
    }
    Ok(Interface {
        name: name.to_owned(),
        index,
        mac,
        up,
        addresses,
    })
}

/// Every interface's name and addresses (to find the subnets a host is connected to).
pub async fn all_addresses(
    handle: &rtnetlink::Handle,
) -> Result<Vec<(String, u32, Vec<VipAddress>)>, Error> {
    let mut links = Vec::new();
    let mut stream = handle.link().get().execute();
    while let Some(link) = stream
        .try_next()
        .await
        .map_err(|e| request_error("*", "listing interfaces", e))?
    {
        let name = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_default();
        links.push((name, link.header.index, Vec::new()));
    }
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| request_error("*", "listing addresses", e))?
    {
        let Some(ip) = address_of(&msg) else { continue };
        if let Some(l) = links.iter_mut().find(|l| l.1 == msg.header.index) {
            l.2.push(VipAddress {
                ip,
                prefix: msg.header.prefix_len,
            });
        }
    }
    Ok(links)
}

fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let mut addr = None;
    for a in &msg.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

/// Add `addrs` to `iface` (an address already there is fine). IPv6 addresses skip duplicate
/// address detection: a virtual address is shared by design.
pub async fn add_addresses(
    handle: &rtnetlink::Handle,
    iface: &Interface,
    addrs: &[VipAddress],
) -> Result<(), Error> {
    for a in addrs {
        let mut req = handle.address().add(iface.index, a.ip, a.prefix).replace();
        if a.ip.is_ipv6() {
            // No duplicate address detection: a VIP is shared by design (a crashed master
            // may still hold it), and DAD would leave it tentative, then failed and unusable.
            // keepalived adds IPv6 VIPs the same way.
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(|e| request_error(&iface.name, "adding an address", format!("{a}: {e}")))?;
    }
    Ok(())
}

/// Remove `addrs` from `iface` if present.
pub async fn remove_addresses(
    handle: &rtnetlink::Handle,
    iface: &Interface,
    addrs: &[VipAddress],
) -> Result<(), Error> {
    for a in addrs {
        let mut found = handle
            .address()
            .get()
            .set_link_index_filter(iface.index)
            .set_address_filter(a.ip)
            .execute();
        while let Ok(Some(msg)) = found.try_next().await {
            handle.address().del(msg).execute().await.map_err(|e| {
                request_error(&iface.name, "removing an address", format!("{a}: {e}"))
            })?;
        }
    }
    Ok(())
}

/// The route message for `r` (scope link, as `ip route add ADDRESS dev IF` writes it).
fn route_message(r: &HostRoute) -> Result<RouteMessage, io::Error> {
    let prefix = if r.address.is_ipv4() { 32 } else { 128 };
    let msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.address, prefix)
        .map_err(|e| io::Error::other(e.to_string()))?
        .output_interface(r.index)
        .table_id(r.table)
        .protocol(RouteProtocol::from(r.protocol))
        .scope(RouteScope::Link)
        .kind(RouteType::Unicast)
        .build();
    Ok(msg)
}

/// Add (or replace) host route `r`; `iface` names the interface in errors.
pub async fn add_route(
    handle: &rtnetlink::Handle,
    iface: &str,
    r: &HostRoute,
) -> Result<(), Error> {
    let msg = route_message(r).map_err(|e| request_error(iface, "adding a route", e))?;
    handle
        .route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(|e| request_error(iface, "adding a route", format!("{}: {e}", r.address)))
}

/// Delete host route `r`; one that is already gone is fine.
pub async fn delete_route(
    handle: &rtnetlink::Handle,
    iface: &str,
    r: &HostRoute,
) -> Result<(), Error> {
    let msg = route_message(r).map_err(|e| request_error(iface, "deleting a route", e))?;
    match handle.route().del(msg).execute().await {
        Ok(()) => Ok(()),
        // ESRCH: no such route.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
        Err(e) => Err(request_error(
            iface,
            "deleting a route",
            format!("{}: {e}", r.address),
        )),
    }
}

/// Every host route (/32, /128) in `table` with `protocol`, whatever its interface.
pub async fn routes(
    handle: &rtnetlink::Handle,
    table: u32,
    protocol: u8,
) -> Result<Vec<HostRoute>, Error> {
    let mut out = Vec::new();
    for query in [
        RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
        RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
    ] {
        let mut stream = handle.route().get(query).execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| request_error("*", "listing routes", e))?
        {
            if let Some(r) = host_route_of(&msg)
                && r.table == table
                && r.protocol == protocol
            {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// `msg` as a [`HostRoute`] if it is one (a /32 or /128 with an output interface).
fn host_route_of(msg: &RouteMessage) -> Option<HostRoute> {
    let mut table = u32::from(msg.header.table);
    let mut address = None;
    let mut index = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                address = Some(IpAddr::V4(*ip));
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                address = Some(IpAddr::V6(*ip));
            }
            RouteAttribute::Oif(i) => index = Some(*i),
            _ => {}
        }
    }
    let address = address?;
    let full = if address.is_ipv4() { 32 } else { 128 };
    if msg.header.destination_prefix_length != full {
        return None;
    }
    Some(HostRoute {
        address,
        index: index?,
        table,
        protocol: u8::from(msg.header.protocol),
    })
}
