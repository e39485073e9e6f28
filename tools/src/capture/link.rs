//! From a captured packet to a TCP segment: the link layer (Ethernet with 802.1Q/802.1ad
//! tags, Linux "cooked" SLL and SLL2, raw IP, BSD loopback), IPv4 (with options) or IPv6
//! (with the extension headers that can be skipped), then the TCP header.
//!
//! A packet that is not a whole, unfragmented TCP segment is not an error of the file: it is
//! [`Skip`]ped with the reason, and the converter counts the reasons. Checksums are not
//! verified: captures taken on the sending host (loopback above all) carry checksums the
//! NIC would have filled in, so they are routinely "wrong".

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// LINKTYPE_NULL: BSD loopback, a 4-byte address family in the capturing host's byte order.
pub const LINKTYPE_NULL: u32 = 0;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// DLT_RAW as some BSDs number it in pcap files (raw IPv4/IPv6).
pub const LINKTYPE_RAW_BSD12: u32 = 12;
/// DLT_RAW as OpenBSD numbers it (raw IPv4/IPv6).
pub const LINKTYPE_RAW_BSD14: u32 = 14;
/// LINKTYPE_RAW: raw IPv4/IPv6.
pub const LINKTYPE_RAW: u32 = 101;
/// LINKTYPE_LOOP: OpenBSD loopback, the address family in network byte order.
pub const LINKTYPE_LOOP: u32 = 108;
/// LINKTYPE_LINUX_SLL: Linux "cooked" capture (`tcpdump -i any`), 16-byte header.
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// LINKTYPE_IPV4: raw IPv4.
pub const LINKTYPE_IPV4: u32 = 228;
/// LINKTYPE_IPV6: raw IPv6.
pub const LINKTYPE_IPV6: u32 = 229;
/// LINKTYPE_LINUX_SLL2: Linux "cooked" capture v2, 20-byte header.
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q, 802.1ad (QinQ outer tag) and the pre-standard QinQ type.
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// At most this many stacked VLAN tags are unwrapped (real networks use one or two).
const VLAN_TAGS_MAX: usize = 8;
/// At most this many IPv6 extension headers are skipped before giving up.
const IPV6_EXTENSIONS_MAX: usize = 16;
const IP_PROTOCOL_TCP: u8 = 6;

/// TCP flag bits.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment found in a packet. `payload` borrows from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub sequence: u32,
    /// The TCP flags byte ([`TCP_FIN`], [`TCP_SYN`], [`TCP_RST`], [`TCP_ACK`], ...).
    pub flags: u8,
    pub payload: &'a [u8],
}

impl Segment<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Why a packet holds no usable TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// A link type this converter does not read.
    LinkType(u32),
    /// A link-layer payload that is not IP (ARP, LLDP, ...): the ethertype or address family.
    NotIp(u32),
    /// The captured bytes end inside this header or before the length the IP header gives
    /// (the capture's snap length cut the packet).
    Truncated(&'static str),
    /// A header with an impossible field.
    Malformed(&'static str),
    /// An IPv4 or IPv6 fragment (fragments are not reassembled; TCP avoids them).
    Fragment,
    /// An IPv6 extension header that cannot be skipped (ESP, ...), or too many of them.
    Ipv6Extension(u8),
    /// An IP packet of another protocol (UDP, ICMP, ...).
    NotTcp(u8),
}

impl fmt::Display for Skip {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::LinkType(link_type) => write!(formatter, "unsupported link type {link_type}"),
            Skip::NotIp(kind) => write!(formatter, "not IP (ethertype or family 0x{kind:04x})"),
            Skip::Truncated(what) => write!(formatter, "cut short inside the {what}"),
            Skip::Malformed(what) => write!(formatter, "malformed {what}"),
            Skip::Fragment => formatter.write_str("IP fragment"),
            Skip::Ipv6Extension(header) => {
                write!(formatter, "IPv6 extension header {header} that cannot be skipped")
            }
            Skip::NotTcp(protocol) => write!(formatter, "not TCP (IP protocol {protocol})"),
        }
    }
}

/// The TCP segment in a packet of the given link type.
pub fn parse(link_type: u32, packet: &[u8]) -> Result<Segment<'_>, Skip> {
    match link_type {
        LINKTYPE_ETHERNET => {
            let header = packet.get(..14).ok_or(Skip::Truncated("Ethernet header"))?;
            ethertype_payload(be16(header, 12), &packet[14..])
        }
        LINKTYPE_LINUX_SLL => {
            let header = packet.get(..16).ok_or(Skip::Truncated("Linux SLL header"))?;
            ethertype_payload(be16(header, 14), &packet[16..])
        }
        LINKTYPE_LINUX_SLL2 => {
            let header = packet.get(..20).ok_or(Skip::Truncated("Linux SLL2 header"))?;
            ethertype_payload(be16(header, 0), &packet[20..])
        }
        LINKTYPE_RAW | LINKTYPE_RAW_BSD12 | LINKTYPE_RAW_BSD14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            ip(packet)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let header = packet.get(..4).ok_or(Skip::Truncated("loopback header"))?;
            let bytes = [header[0], header[1], header[2], header[3]];
            let family = if link_type == LINKTYPE_LOOP {
                u32::from_be_bytes(bytes)
            } else {
                // The capturing host's byte order: a family is a small number, so a value
                // with high bits set was written big-endian.
                let little = u32::from_le_bytes(bytes);
                if little > 0xffff {
                    u32::from_be_bytes(bytes)
                } else {
                    little
                }
            };
            match family {
                // AF_INET everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28 (FreeBSD) or
                // 30 (macOS).
                2 | 24 | 28 | 30 => ip(&packet[4..]),
                other => Err(Skip::NotIp(other)),
            }
        }
        other => Err(Skip::LinkType(other)),
    }
}

/// Unwraps VLAN tags, then parses IP.
fn ethertype_payload(mut ethertype: u16, mut payload: &[u8]) -> Result<Segment<'_>, Skip> {
    let mut tags = 0;
    while ETHERTYPE_VLAN.contains(&ethertype) {
        tags += 1;
        if tags > VLAN_TAGS_MAX {
            return Err(Skip::Malformed("VLAN tag stack (more than 8 tags)"));
        }
        // A tag: 2 bytes of priority/VLAN id, then the next ethertype.
        let tag = payload.get(..4).ok_or(Skip::Truncated("VLAN tag"))?;
        ethertype = be16(tag, 2);
        payload = &payload[4..];
    }
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => ip(payload),
        other => Err(Skip::NotIp(u32::from(other))),
    }
}

/// IPv4 or IPv6, by the version nibble.
fn ip(packet: &[u8]) -> Result<Segment<'_>, Skip> {
    match packet.first().map(|byte| byte >> 4) {
        Some(4) => ipv4(packet),
        Some(6) => ipv6(packet),
        Some(_) => Err(Skip::Malformed("IP header (version is neither 4 nor 6)")),
        None => Err(Skip::Truncated("IP header")),
    }
}

fn ipv4(packet: &[u8]) -> Result<Segment<'_>, Skip> {
    let header = packet.get(..20).ok_or(Skip::Truncated("IPv4 header"))?;
    let header_length = usize::from(header[0] & 0x0f) * 4;
    if header_length < 20 {
        return Err(Skip::Malformed("IPv4 header (header length below 20)"));
    }
    let mut total_length = usize::from(be16(header, 2));
    if total_length == 0 {
        // Segmentation offload: a packet captured before the NIC split it may carry 0;
        // the captured bytes are the packet.
        total_length = packet.len();
    }
    if total_length < header_length {
        return Err(Skip::Malformed("IPv4 header (total length below the header length)"));
    }
    if packet.len() < header_length {
        return Err(Skip::Truncated("IPv4 options"));
    }
    let fragment = be16(header, 6);
    // More-fragments set, or a non-zero fragment offset.
    if fragment & 0x3fff != 0 {
        return Err(Skip::Fragment);
    }
    if header[9] != IP_PROTOCOL_TCP {
        return Err(Skip::NotTcp(header[9]));
    }
    // Bytes past the total length are link-layer padding (short Ethernet frames).
    let body = packet.get(header_length..total_length).ok_or(Skip::Truncated("IPv4 packet"))?;
    let source = IpAddr::V4(Ipv4Addr::new(header[12], header[13], header[14], header[15]));
    let destination = IpAddr::V4(Ipv4Addr::new(header[16], header[17], header[18], header[19]));
    tcp(source, destination, body)
}

fn ipv6(packet: &[u8]) -> Result<Segment<'_>, Skip> {
    let header = packet.get(..40).ok_or(Skip::Truncated("IPv6 header"))?;
    let payload_length = usize::from(be16(header, 4));
    let end = if payload_length == 0 {
        // A jumbogram or an offloaded packet: the captured bytes are the packet.
        packet.len()
    } else {
        40 + payload_length
    };
    let mut body = packet.get(40..end).ok_or(Skip::Truncated("IPv6 packet"))?;
    let address = |at: usize| {
        let mut octets = [0_u8; 16];
        octets.copy_from_slice(&header[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let (source, destination) = (address(8), address(24));
    let mut next = header[6];
    for _ in 0..IPV6_EXTENSIONS_MAX {
        match next {
            IP_PROTOCOL_TCP => return tcp(source, destination, body),
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6, and the two
            // experimental numbers: all "next header, length in 8-byte units minus 1".
            0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => {
                let extension = body.get(..2).ok_or(Skip::Truncated("IPv6 extension header"))?;
                let length = (usize::from(extension[1]) + 1) * 8;
                next = extension[0];
                body = body.get(length..).ok_or(Skip::Truncated("IPv6 extension header"))?;
            }
            // Authentication header: length in 4-byte units minus 2.
            51 => {
                let extension = body.get(..2).ok_or(Skip::Truncated("IPv6 extension header"))?;
                let length = (usize::from(extension[1]) + 2) * 4;
                next = extension[0];
                body = body.get(length..).ok_or(Skip::Truncated("IPv6 extension header"))?;
            }
            // Fragment header: an "atomic" fragment (offset 0, no more fragments) is a whole
            // packet; any other is a piece.
            44 => {
                let extension = body.get(..8).ok_or(Skip::Truncated("IPv6 fragment header"))?;
                if be16(extension, 2) & 0xfff9 != 0 {
                    return Err(Skip::Fragment);
                }
                next = extension[0];
                body = &body[8..];
            }
            // ESP encrypts what follows.
            50 => return Err(Skip::Ipv6Extension(50)),
            other => return Err(Skip::NotTcp(other)),
        }
    }
    Err(Skip::Ipv6Extension(next))
}

fn tcp(source: IpAddr, destination: IpAddr, segment: &[u8]) -> Result<Segment<'_>, Skip> {
    let header = segment.get(..20).ok_or(Skip::Truncated("TCP header"))?;
    let header_length = usize::from(header[12] >> 4) * 4;
    if header_length < 20 {
        return Err(Skip::Malformed("TCP header (data offset below 5)"));
    }
    let payload = segment.get(header_length..).ok_or(Skip::Truncated("TCP options"))?;
    Ok(Segment {
        source: SocketAddr::new(source, be16(header, 0)),
        destination: SocketAddr::new(destination, be16(header, 2)),
        sequence: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        flags: header[13],
        payload,
    })
}

/// The big-endian u16 at `at` (callers check the length first).
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}
