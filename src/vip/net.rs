//! The privileged sockets of the VIP: raw VRRP sockets (CAP_NET_RAW) and gratuitous ARP /
//! unsolicited NA frames (CAP_NET_RAW). Address changes go through [`crate::netlink`]
//! (CAP_NET_ADMIN). Everything here is called from [`super::task`]; nothing decides anything.

use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{self, Advert, Invalid, Received};
use super::{Error, Interface};
use crate::config::{ChecksumStyle, VipAddress, VipConfig};

/// IP TOS of adverts: network control (as keepalived).
const TOS_NETWORK_CONTROL: u32 = 0xc0;
/// ETH_P_ARP.
const ETH_P_ARP: u16 = 0x0806;

/// The VRRP sockets of one instance: a send and a receive socket per address family in use.
#[derive(Debug)]
pub(crate) struct Sockets {
    tx4: Option<(Socket, Ipv4Addr)>,
    rx4: Option<AsyncFd<Socket>>,
    tx6: Option<(Socket, Ipv6Addr)>,
    rx6: Option<AsyncFd<Socket>>,
    /// AF_PACKET socket for gratuitous ARP.
    arp: Option<Socket>,
    /// Raw ICMPv6 socket for unsolicited neighbour advertisements.
    icmp6: Option<Socket>,
    index: u32,
    mac: [u8; 6],
    peers: Vec<IpAddr>,
    checksum: ChecksumStyle,
}

impl Sockets {
    /// Open and set up every socket `cfg` needs on `iface`, sourcing adverts from `src4`
    /// (the interface's primary IPv4 address) and `src6` (its link-local address).
    pub(crate) fn open(
        cfg: &VipConfig,
        iface: &Interface,
        src4: Option<Ipv4Addr>,
        src6: Option<Ipv6Addr>,
    ) -> Result<Sockets, Error> {
        let err = |what: &'static str| {
            let interface = iface.name.clone();
            let vrid = cfg.vrid;
            move |error| Error::Socket {
                interface: interface.clone(),
                vrid,
                what,
                error,
            }
        };
        let dev = iface.name.as_bytes();
        let unicast = !cfg.unicast_peers.is_empty();
        let (mut tx4, mut rx4, mut arp) = (None, None, None);
        if let Some(src) = src4 {
            let tx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
                .map_err(err("opening the IPv4 VRRP socket"))?;
            tx.bind_device(Some(dev))
                .map_err(err("binding to the interface"))?;
            tx.set_multicast_if_v4(&src)
                .map_err(err("IP_MULTICAST_IF"))?;
            tx.set_multicast_ttl_v4(u32::from(packet::TTL))
                .map_err(err("IP_MULTICAST_TTL"))?;
            tx.set_ttl_v4(u32::from(packet::TTL))
                .map_err(err("IP_TTL"))?;
            tx.set_multicast_loop_v4(false)
                .map_err(err("IP_MULTICAST_LOOP"))?;
            tx.set_tos_v4(TOS_NETWORK_CONTROL).map_err(err("IP_TOS"))?;
            tx.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))
                .map_err(err("binding to the primary address"))?;
            tx4 = Some((tx, src));
            let rx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
                .map_err(err("opening the IPv4 VRRP socket"))?;
            rx.bind_device(Some(dev))
                .map_err(err("binding to the interface"))?;
            if !unicast {
                rx.join_multicast_v4_n(
                    &packet::GROUP_V4,
                    &InterfaceIndexOrAddress::Index(iface.index),
                )
                .map_err(err("joining 224.0.0.18"))?;
            }
            rx.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
            rx4 = Some(async_fd(rx).map_err(err("registering with the runtime"))?);
            let a = Socket::new(
                Domain::PACKET,
                Type::RAW,
                Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))),
            )
            .map_err(err("opening the ARP socket"))?;
            arp = Some(a);
        }
        let (mut tx6, mut rx6, mut icmp6) = (None, None, None);
        if let Some(src) = src6 {
            let tx = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(112)))
                .map_err(err("opening the IPv6 VRRP socket"))?;
            tx.bind_device(Some(dev))
                .map_err(err("binding to the interface"))?;
            tx.set_multicast_if_v6(iface.index)
                .map_err(err("IPV6_MULTICAST_IF"))?;
            tx.set_multicast_hops_v6(u32::from(packet::TTL))
                .map_err(err("IPV6_MULTICAST_HOPS"))?;
            tx.set_unicast_hops_v6(u32::from(packet::TTL))
                .map_err(err("IPV6_UNICAST_HOPS"))?;
            tx.set_multicast_loop_v6(false)
                .map_err(err("IPV6_MULTICAST_LOOP"))?;
            tx.bind(&SockAddr::from(SocketAddrV6::new(src, 0, 0, iface.index)))
                .map_err(err("binding to the link-local address"))?;
            tx6 = Some((tx, src));
            let rx = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(112)))
                .map_err(err("opening the IPv6 VRRP socket"))?;
            rx.bind_device(Some(dev))
                .map_err(err("binding to the interface"))?;
            if !unicast {
                rx.join_multicast_v6(&packet::GROUP_V6, iface.index)
                    .map_err(err("joining ff02::12"))?;
            }
            use nix::sys::socket::{setsockopt, sockopt};
            setsockopt(&rx, sockopt::Ipv6RecvHopLimit, &true)
                .map_err(|e| err("IPV6_RECVHOPLIMIT")(io::Error::from(e)))?;
            setsockopt(&rx, sockopt::Ipv6RecvPacketInfo, &true)
                .map_err(|e| err("IPV6_RECVPKTINFO")(io::Error::from(e)))?;
            rx.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
            rx6 = Some(async_fd(rx).map_err(err("registering with the runtime"))?);
            let i = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                .map_err(err("opening the ICMPv6 socket"))?;
            i.bind_device(Some(dev))
                .map_err(err("binding to the interface"))?;
            i.set_multicast_if_v6(iface.index)
                .map_err(err("IPV6_MULTICAST_IF"))?;
            i.set_multicast_hops_v6(255)
                .map_err(err("IPV6_MULTICAST_HOPS"))?;
            icmp6 = Some(i);
        }
        Ok(Sockets {
            tx4,
            rx4,
            tx6,
            rx6,
            arp,
            icmp6,
            index: iface.index,
            mac: iface.mac,
            peers: cfg.unicast_peers.clone(),
            checksum: cfg.checksum,
        })
    }

    /// Our own source addresses (adverts from them are ignored).
    pub(crate) fn sources(&self) -> Vec<IpAddr> {
        let mut v = Vec::new();
        if let Some((_, a)) = &self.tx4 {
            v.push(IpAddr::V4(*a));
        }
        if let Some((_, a)) = &self.tx6 {
            v.push(IpAddr::V6(*a));
        }
        v
    }

    /// Send `advert` once per family (its addresses of that family), to the group or to
    /// every unicast peer of that family. Returns how many were sent; the first error.
    pub(crate) fn send(&self, advert: &Advert) -> (usize, Option<io::Error>) {
        let mut sent = 0;
        let mut first = None;
        let mut note = |r: io::Result<usize>| match r {
            Ok(_) => sent += 1,
            Err(e) => {
                first.get_or_insert(e);
            }
        };
        if let Some((sock, src)) = &self.tx4 {
            let dsts: Vec<Ipv4Addr> = if self.peers.is_empty() {
                vec![packet::GROUP_V4]
            } else {
                self.peers
                    .iter()
                    .filter_map(|p| match p {
                        IpAddr::V4(a) => Some(*a),
                        IpAddr::V6(_) => None,
                    })
                    .collect()
            };
            for dst in dsts {
                let bytes = advert.encode(self.checksum, IpAddr::V4(*src), IpAddr::V4(dst));
                note(sock.send_to(&bytes, &SockAddr::from(SocketAddrV4::new(dst, 0))));
            }
        }
        if let Some((sock, src)) = &self.tx6 {
            let dsts: Vec<Ipv6Addr> = if self.peers.is_empty() {
                vec![packet::GROUP_V6]
            } else {
                self.peers
                    .iter()
                    .filter_map(|p| match p {
                        IpAddr::V6(a) => Some(*a),
                        IpAddr::V4(_) => None,
                    })
                    .collect()
            };
            for dst in dsts {
                let bytes = advert.encode(self.checksum, IpAddr::V6(*src), IpAddr::V6(dst));
                let scope = if dst.is_unicast_link_local() || dst.is_multicast() {
                    self.index
                } else {
                    0
                };
                note(sock.send_to(&bytes, &SockAddr::from(SocketAddrV6::new(dst, 0, 0, scope))));
            }
        }
        (sent, first)
    }

    /// Wait for the next packet on either family and decode it.
    pub(crate) async fn recv(&self) -> io::Result<Result<Received, Invalid>> {
        let mut buf = [0u8; 2048];
        loop {
            tokio::select! {
                r = readable(self.rx4.as_ref()) => {
                    let mut guard = r?;
                    match guard.try_io(|s| s.get_ref().read(&mut buf)) {
                        Ok(Ok(n)) => return Ok(packet::decode_ipv4(&buf[..n])),
                        Ok(Err(e)) => return Err(e),
                        Err(_would_block) => continue,
                    }
                }
                r = readable(self.rx6.as_ref()) => {
                    let mut guard = r?;
                    match guard.try_io(|s| recv_v6(s.get_ref(), &mut buf)) {
                        Ok(Ok(r)) => return Ok(r),
                        Ok(Err(e)) => return Err(e),
                        Err(_would_block) => continue,
                    }
                }
            }
        }
    }

    /// The next packet already queued on either family, without waiting: `None` when there
    /// is none (or on a receive error, which the next [`Sockets::recv`] reports).
    pub(crate) fn try_recv(&self) -> Option<io::Result<Result<Received, Invalid>>> {
        let mut buf = [0u8; 2048];
        if let Some(fd) = &self.rx4 {
            match fd.get_ref().read(&mut buf) {
                Ok(n) => return Some(Ok(packet::decode_ipv4(&buf[..n]))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        if let Some(fd) = &self.rx6 {
            match recv_v6(fd.get_ref(), &mut buf) {
                Ok(r) => return Some(Ok(r)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Gratuitous ARP for each IPv4 address, unsolicited NA for each IPv6 one.
    pub(crate) fn announce(&self, addrs: &[VipAddress]) -> io::Result<usize> {
        let mut sent = 0;
        for a in addrs {
            match a.ip {
                IpAddr::V4(ip) => {
                    if let Some(s) = &self.arp {
                        s.send_to(
                            &packet::gratuitous_arp(self.mac, ip),
                            &link_broadcast(self.index),
                        )?;
                        sent += 1;
                    }
                }
                IpAddr::V6(ip) => {
                    if let Some(s) = &self.icmp6 {
                        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                        s.send_to(
                            &packet::unsolicited_na(self.mac, ip),
                            &SockAddr::from(SocketAddrV6::new(all_nodes, 0, 0, self.index)),
                        )?;
                        sent += 1;
                    }
                }
            }
        }
        Ok(sent)
    }
}

/// Register `s` with the runtime. `AsyncFd::new` is deprecated for arbitrary `AsRawFd`
/// types; a `Socket` owns its descriptor until dropped, which is exactly the invariant the
/// replacement (`unsafe register`) asks the caller to uphold.
#[allow(deprecated)]
fn async_fd(s: Socket) -> io::Result<AsyncFd<Socket>> {
    AsyncFd::with_interest(s, tokio::io::Interest::READABLE)
}

/// Readable readiness of `fd`, or never when the family is not in use.
async fn readable(
    fd: Option<&AsyncFd<Socket>>,
) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, Socket>> {
    match fd {
        Some(fd) => fd.readable().await,
        None => std::future::pending().await,
    }
}

/// One IPv6 VRRP message with its source, destination and hop limit from ancillary data.
fn recv_v6(sock: &Socket, buf: &mut [u8]) -> io::Result<Result<Received, Invalid>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg};
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let (mut hops, mut dst) = (None, None);
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv6HopLimit(h) => hops = Some(h),
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            _ => {}
        }
    }
    let n = msg.bytes;
    let Some(src) = msg.address.map(|a| a.ip()) else {
        return Ok(Err(Invalid::Truncated));
    };
    let (Some(hops), Some(dst)) = (hops, dst) else {
        return Ok(Err(Invalid::Truncated));
    };
    let ttl = u8::try_from(hops).unwrap_or(0);
    Ok(packet::decode_vrrp(
        &buf[..n],
        IpAddr::V6(src),
        IpAddr::V6(dst),
        ttl,
    ))
}

/// The link-layer broadcast address on interface `index`, for AF_PACKET sends.
#[allow(unsafe_code)]
fn link_broadcast(index: u32) -> SockAddr {
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is a sockaddr type of this platform and fits in sockaddr_storage
    // (view_as asserts the size); we only write its plain integer fields.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = index as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised sockaddr_ll of exactly `len` bytes.
    unsafe { SockAddr::new(storage, len) }
}
