//! From a captured packet to a TCP segment: the link layer, IPv4 or IPv6 (with the
//! extension headers that can be skipped), then the TCP header.
//!
//! The headers are read with `etherparse`: Ethernet II, 802.1Q/802.1ad VLAN tags (one at a
//! time, up to [`VLAN_TAGS_MAX`] stacked), IPv4 with its options and IPv6 with the hop-by-hop,
//! routing, destination options, fragment and authentication headers (its lax slicing, so
//! that a packet whose IP length field is 0, as segmentation offload leaves it, is taken
//! as the captured bytes), and TCP. Three small decoders stay here, for link types
//! etherparse does not cover as captured: Linux "cooked" SLL (etherparse reads it only for
//! ARPHRD_ETHER, while `tcpdump -i any` labels loopback packets ARPHRD_LOOPBACK) and SLL2
//! (not in etherparse), whose headers only tell the ethertype here; and the BSD loopback
//! header (a 4-byte address family).
//!
//! A packet that is not a whole, unfragmented TCP segment is not an error of the file: it is
//! [`Skip`]ped with the reason, and the converter counts the reasons. Checksums are not
//! verified: captures taken on the sending host (loopback above all) carry checksums the
//! NIC would have filled in, so they are routinely "wrong".

use std::fmt;
use std::net::SocketAddr;

use etherparse::err::{ip, tcp, Layer};
use etherparse::{Ethernet2Slice, IpNumber, LaxIpSlice, SingleVlanSlice, TcpSlice};

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
pub const VLAN_TAGS_MAX: usize = 8;
/// IPv6 extension headers etherparse does not walk (mobility, HIP, shim6, the two
/// experimental numbers), and ESP, which encrypts what follows.
const IPV6_EXTENSIONS_UNWALKED: [u8; 6] = [50, 135, 139, 140, 253, 254];

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
            let ethernet = Ethernet2Slice::from_slice_without_fcs(packet)
                .map_err(|_| Skip::Truncated("Ethernet header"))?;
            let payload = ethernet.payload();
            ethertype_payload(payload.ether_type.0, payload.payload)
        }
        // The cooked headers, decoded here (see the module's comment): SLL has the protocol
        // at bytes 14..16 of 16, SLL2 at bytes 0..2 of 20.
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
        let tag = SingleVlanSlice::from_slice(payload).map_err(|_| Skip::Truncated("VLAN tag"))?;
        let inner = tag.payload();
        ethertype = inner.ether_type.0;
        payload = inner.payload;
    }
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => ip(payload),
        other => Err(Skip::NotIp(u32::from(other))),
    }
}

/// IPv4 or IPv6 (by the version nibble), then TCP.
fn ip(packet: &[u8]) -> Result<Segment<'_>, Skip> {
    let (slice, extension_error) = LaxIpSlice::from_slice(packet).map_err(|error| match error {
        ip::LaxHeaderSliceError::Len(error) => Skip::Truncated(match error.layer {
            Layer::Ipv4Header => "IPv4 header",
            Layer::Ipv6Header => "IPv6 header",
            _ => "IP header",
        }),
        ip::LaxHeaderSliceError::Content(ip::HeaderError::UnsupportedIpVersion { .. }) => {
            Skip::Malformed("IP header (version is neither 4 nor 6)")
        }
        ip::LaxHeaderSliceError::Content(ip::HeaderError::Ipv4HeaderLengthSmallerThanHeader {
            ..
        }) => Skip::Malformed("IPv4 header (header length below 20)"),
    })?;
    let version6 = matches!(slice, LaxIpSlice::Ipv6(_));
    if let LaxIpSlice::Ipv4(ipv4) = &slice {
        let header = ipv4.header();
        let total_length = usize::from(header.total_len());
        // 0 is segmentation offload (a packet captured before the NIC split it): the lax
        // slice then takes the captured bytes, as it should. Any other length shorter
        // than the header is impossible, which the lax slice would paper over.
        if total_length != 0 && total_length < header.slice().len() {
            return Err(Skip::Malformed("IPv4 header (total length below the header length)"));
        }
    }
    let payload = slice.payload();
    if payload.incomplete {
        // The capture's snap length cut the packet short of its IP length.
        return Err(Skip::Truncated(if version6 { "IPv6 packet" } else { "IPv4 packet" }));
    }
    if let Some((error, _)) = extension_error {
        return Err(match error {
            etherparse::err::ipv6_exts::HeaderSliceError::Len(_) => {
                Skip::Truncated("IPv6 extension header")
            }
            etherparse::err::ipv6_exts::HeaderSliceError::Content(_) => {
                Skip::Malformed("IPv6 extension header")
            }
        });
    }
    if payload.fragmented {
        return Err(Skip::Fragment);
    }
    match payload.ip_number {
        IpNumber::TCP => tcp(&slice, payload.payload),
        IpNumber(number) if version6 && IPV6_EXTENSIONS_UNWALKED.contains(&number) => {
            Err(Skip::Ipv6Extension(number))
        }
        IpNumber(number) => Err(Skip::NotTcp(number)),
    }
}

fn tcp<'a>(ip: &LaxIpSlice<'_>, segment: &'a [u8]) -> Result<Segment<'a>, Skip> {
    let tcp = TcpSlice::from_slice(segment).map_err(|error| match error {
        tcp::HeaderSliceError::Len(_) if segment.len() < 20 => Skip::Truncated("TCP header"),
        tcp::HeaderSliceError::Len(_) => Skip::Truncated("TCP options"),
        tcp::HeaderSliceError::Content(_) => Skip::Malformed("TCP header (data offset below 5)"),
    })?;
    Ok(Segment {
        source: SocketAddr::new(ip.source_addr(), tcp.source_port()),
        destination: SocketAddr::new(ip.destination_addr(), tcp.destination_port()),
        sequence: tcp.sequence_number(),
        // The flags byte as sent (etherparse checked that the header has its 20 bytes).
        flags: tcp.header_slice()[13],
        payload: tcp.payload(),
    })
}

/// The big-endian u16 at `at` (callers check the length first).
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}
