//! Unit tests of the pcap → capture conversion, on packets and files built here byte by
//! byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rush_engine::Request;
use rush_net::capture::{Capture, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::protocol::{decode_request, encode_request};

use super::link::{self, Skip, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use super::pcap::{self, Format, PacketReader, PcapError};
use super::reassembly::{Limits, Reassembler, LIMITS};
use super::{convert, Conversion};

const PORT: u16 = 7390;
const CLIENT_PORT: u16 = 40_000;
const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
/// 2026-01-01T00:00:00Z, so timestamps look real.
const T0: u64 = 1_767_225_600_000_000_000;
const ACK: u8 = TCP_ACK;

// ---- builders -------------------------------------------------------------------------

/// `count` request frames (PINGs with request ids `first..`).
fn frames(first: u64, count: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for id in first..first + count {
        encode_request(id, &Request::Ping, &mut bytes);
    }
    bytes
}

/// A TCP header (data offset 5, or more with `options`) and payload.
fn tcp(
    source_port: u16,
    destination_port: u16,
    sequence: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    tcp_with_options(source_port, destination_port, sequence, flags, &[], payload)
}

fn tcp_with_options(
    source_port: u16,
    destination_port: u16,
    sequence: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&source_port.to_be_bytes());
    bytes.extend_from_slice(&destination_port.to_be_bytes());
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes.extend_from_slice(&0_u32.to_be_bytes()); // ack number
    bytes.push((((20 + options.len()) / 4) << 4) as u8);
    bytes.push(flags);
    bytes.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
    bytes.extend_from_slice(options);
    bytes.extend_from_slice(payload);
    bytes
}

fn ipv4(
    source: [u8; 4],
    destination: [u8; 4],
    protocol: u8,
    options: &[u8],
    body: &[u8],
) -> Vec<u8> {
    ipv4_fragment(source, destination, protocol, options, 0, body)
}

fn ipv4_fragment(
    source: [u8; 4],
    destination: [u8; 4],
    protocol: u8,
    options: &[u8],
    fragment: u16,
    body: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let header_length = 20 + options.len();
    let mut bytes = vec![0x40 | (header_length / 4) as u8, 0];
    bytes.extend_from_slice(&((header_length + body.len()) as u16).to_be_bytes());
    bytes.extend_from_slice(&[0, 1]); // identification
    bytes.extend_from_slice(&fragment.to_be_bytes());
    bytes.extend_from_slice(&[64, protocol, 0, 0]);
    bytes.extend_from_slice(&source);
    bytes.extend_from_slice(&destination);
    bytes.extend_from_slice(options);
    bytes.extend_from_slice(body);
    bytes
}

fn ipv6(source: Ipv6Addr, destination: Ipv6Addr, next: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x60, 0, 0, 0];
    bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&[next, 64]);
    bytes.extend_from_slice(&source.octets());
    bytes.extend_from_slice(&destination.octets());
    bytes.extend_from_slice(body);
    bytes
}

fn ethernet(ethertype: u16, vlan_tags: &[(u16, u16)], body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for &(tpid, vlan) in vlan_tags {
        bytes.extend_from_slice(&tpid.to_be_bytes());
        bytes.extend_from_slice(&vlan.to_be_bytes());
    }
    bytes.extend_from_slice(&ethertype.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn sll(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    bytes.extend_from_slice(&ethertype.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn sll2(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = ethertype.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    bytes.extend_from_slice(body);
    bytes
}

/// A client→server segment over Ethernet/IPv4.
fn to_server(sequence: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    to_server_from(CLIENT_PORT, sequence, flags, payload)
}

fn to_server_from(client_port: u16, sequence: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(
        0x0800,
        &[],
        &ipv4(CLIENT, SERVER, 6, &[], &tcp(client_port, PORT, sequence, flags, payload)),
    )
}

/// A server→client segment over Ethernet/IPv4.
fn from_server(sequence: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(
        0x0800,
        &[],
        &ipv4(SERVER, CLIENT, 6, &[], &tcp(PORT, CLIENT_PORT, sequence, flags, payload)),
    )
}

/// A classic pcap file.
fn pcap_file(big_endian: bool, nanos: bool, link_type: u32, packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let u32_bytes = |value: u32| if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
    let u16_bytes = |value: u16| if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&u32_bytes(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    bytes.extend_from_slice(&u16_bytes(2));
    bytes.extend_from_slice(&u16_bytes(4));
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&u32_bytes(262_144));
    bytes.extend_from_slice(&u32_bytes(link_type));
    for (time_ns, data) in packets {
        let fraction = time_ns % 1_000_000_000;
        bytes.extend_from_slice(&u32_bytes((time_ns / 1_000_000_000) as u32));
        bytes.extend_from_slice(&u32_bytes(if nanos { fraction } else { fraction / 1000 } as u32));
        bytes.extend_from_slice(&u32_bytes(data.len() as u32));
        bytes.extend_from_slice(&u32_bytes(data.len() as u32));
        bytes.extend_from_slice(data);
    }
    bytes
}

/// A pcapng file, block by block.
struct PcapNg {
    big_endian: bool,
    bytes: Vec<u8>,
}

impl PcapNg {
    fn new(big_endian: bool) -> PcapNg {
        let mut file = PcapNg { big_endian, bytes: Vec::new() };
        file.section();
        file
    }

    fn u16(&self, value: u16) -> [u8; 2] {
        if self.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    }

    fn u32(&self, value: u32) -> [u8; 4] {
        if self.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    }

    fn block(&mut self, block_type: u32, body: &[u8]) -> &mut PcapNg {
        let mut padded = body.to_vec();
        padded.resize(body.len().div_ceil(4) * 4, 0);
        let length = self.u32(12 + padded.len() as u32);
        let block_type = self.u32(block_type);
        self.bytes.extend_from_slice(&block_type);
        self.bytes.extend_from_slice(&length);
        self.bytes.extend_from_slice(&padded);
        self.bytes.extend_from_slice(&length);
        self
    }

    fn section(&mut self) -> &mut PcapNg {
        let mut body = self.u32(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]); // section length: unknown
        self.block(0x0a0d_0d0a, &body)
    }

    /// An IDB, with `if_tsresol` when given.
    fn interface(&mut self, link_type: u16, tsresol: Option<u8>) -> &mut PcapNg {
        let mut body = self.u16(link_type).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32(262_144));
        // An option this reader ignores (if_name "lo"), then if_tsresol, then the end.
        body.extend_from_slice(&self.u16(2));
        body.extend_from_slice(&self.u16(2));
        body.extend_from_slice(b"lo\0\0");
        if let Some(resolution) = tsresol {
            body.extend_from_slice(&self.u16(9));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&[resolution, 0, 0, 0]);
        }
        body.extend_from_slice(&[0; 4]);
        self.block(1, &body)
    }

    fn enhanced(&mut self, interface: u32, units: u64, data: &[u8]) -> &mut PcapNg {
        let mut body = self.u32(interface).to_vec();
        body.extend_from_slice(&self.u32((units >> 32) as u32));
        body.extend_from_slice(&self.u32(units as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(data);
        body.resize(body.len().div_ceil(4) * 4, 0);
        // An epb_flags option and the end of options.
        body.extend_from_slice(&self.u16(2));
        body.extend_from_slice(&self.u16(4));
        body.extend_from_slice(&self.u32(1));
        body.extend_from_slice(&[0; 4]);
        self.block(6, &body)
    }

    fn simple(&mut self, data: &[u8]) -> &mut PcapNg {
        let mut body = self.u32(data.len() as u32).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }
}

// ---- helpers --------------------------------------------------------------------------

/// Converts Ethernet packets given as (ns after T0, bytes).
fn run(packets: &[(u64, Vec<u8>)]) -> Conversion {
    let timed: Vec<(u64, Vec<u8>)> =
        packets.iter().map(|(time, data)| (T0 + time, data.clone())).collect();
    convert(&pcap_file(false, true, 1, &timed)[..], PORT).expect("converts")
}

/// (connection, kind) of every record.
fn kinds(capture: &Capture) -> Vec<(u64, u8)> {
    capture.records.iter().map(|record| (record.connection.get(), record.kind)).collect()
}

/// The frames of every FRAME record, concatenated, and their request ids.
fn frame_ids(capture: &Capture) -> Vec<u64> {
    capture
        .records
        .iter()
        .filter(|record| record.kind == KIND_FRAME)
        .map(|record| decode_request(record.bytes()).expect("a valid frame").0.request_id)
        .collect()
}

fn frame_times(capture: &Capture) -> Vec<u64> {
    capture
        .records
        .iter()
        .filter(|record| record.kind == KIND_FRAME)
        .map(|record| record.recv_ns.get())
        .collect()
}

// ---- reassembly -----------------------------------------------------------------------

#[test]
fn in_order_stream_becomes_open_frames_close() {
    let data = frames(1, 3);
    let isn = 1000_u32;
    let conversion = run(&[
        (0, to_server(isn, TCP_SYN, &[])),
        (10, from_server(5000, TCP_SYN | ACK, &[])),
        (20, to_server(isn + 1, ACK, &[])),
        // 100 bytes: frame 1 and part of frame 2; then the rest.
        (30, to_server(isn + 1, ACK, &data[..100])),
        (40, from_server(5001, ACK, &[0; 64])),
        (50, to_server(isn + 101, ACK, &data[100..])),
        (60, to_server(isn + 193, TCP_FIN | ACK, &[])),
        (70, to_server(isn + 194, ACK, &[])),
    ]);
    let capture = &conversion.capture;
    assert_eq!(capture.header.started_unix_ns.get(), T0);
    assert_eq!(
        kinds(capture),
        vec![(1, KIND_OPEN), (1, KIND_FRAME), (1, KIND_FRAME), (1, KIND_FRAME), (1, KIND_CLOSE)]
    );
    assert_eq!(frame_ids(capture), vec![1, 2, 3]);
    // A frame's time is that of the packet that completed it.
    assert_eq!(frame_times(capture), vec![30, 50, 50]);
    assert_eq!(capture.records[0].recv_ns.get(), 0);
    assert_eq!(capture.records[4].recv_ns.get(), 60);
    let stats = &conversion.report.stats;
    assert_eq!((stats.connections, stats.frames, stats.without_syn), (1, 3, 0));
    assert_eq!((stats.to_server_segments, stats.from_server_segments), (6, 2));
    assert_eq!(stats.retransmitted_bytes, 0);
    assert!(conversion.report.warnings.lines.is_empty(), "{:?}", conversion.report.warnings);
}

#[test]
fn out_of_order_segments_wait_for_the_gap() {
    let data = frames(1, 4);
    let isn = 7_u32;
    let at = |offset: usize| isn + 1 + offset as u32;
    let conversion = run(&[
        (0, to_server(isn, TCP_SYN, &[])),
        (10, to_server(at(0), ACK, &data[..64])),
        (20, to_server(at(192), ACK, &data[192..])),
        (30, to_server(at(128), ACK, &data[128..192])),
        (40, to_server(at(64), ACK, &data[64..128])),
        (50, to_server(at(256), TCP_FIN | ACK, &[])),
    ]);
    assert_eq!(frame_ids(&conversion.capture), vec![1, 2, 3, 4]);
    // Frames 2, 3 and 4 were completed by the packet that filled the gap.
    assert_eq!(frame_times(&conversion.capture), vec![10, 40, 40, 40]);
    assert_eq!(conversion.report.stats.out_of_order_segments, 2);
    assert_eq!(conversion.report.stats.retransmitted_bytes, 0);
}

#[test]
fn retransmissions_and_overlaps_are_delivered_once() {
    let data = frames(1, 5);
    let isn = 90_u32;
    let at = |offset: usize| isn + 1 + offset as u32;
    let conversion = run(&[
        (0, to_server(isn, TCP_SYN, &[])),
        (1, to_server(isn, TCP_SYN, &[])), // the SYN again
        (10, to_server(at(0), ACK, &data[..100])),
        (20, to_server(at(0), ACK, &data[..64])), // entirely old
        (30, to_server(at(50), ACK, &data[50..150])), // 50 old bytes, 50 new
        // Ahead of a gap at 150: two overlapping held segments, one held twice.
        (40, to_server(at(200), ACK, &data[200..260])),
        (41, to_server(at(180), ACK, &data[180..230])),
        (42, to_server(at(200), ACK, &data[200..240])),
        // Fills the gap and overlaps both.
        (50, to_server(at(150), ACK, &data[150..210])),
        (60, to_server(at(240), ACK, &data[240..])),
        (70, to_server(at(320), TCP_FIN | ACK, &[])),
    ]);
    assert_eq!(frame_ids(&conversion.capture), vec![1, 2, 3, 4, 5]);
    let stats = &conversion.report.stats;
    assert_eq!(stats.connections, 1);
    // 64 + 50 before the gap; 40 (the shorter copy at 200); after the fill at 210: the held
    // segment at 180 (ends 230) overlaps 30, the one at 200 (ends 260) overlaps 30; the last
    // segment (240..320) overlaps 20.
    assert_eq!(stats.retransmitted_bytes, 64 + 50 + 40 + 30 + 30 + 20);
    assert_eq!(stats.out_of_order_segments, 2);
}

#[test]
fn sequence_numbers_wrap_around() {
    let data = frames(1, 3);
    // The data starts 70 bytes before the wrap: frame 2 straddles it.
    let isn = u32::MAX - 70;
    let at = |offset: usize| isn.wrapping_add(1 + offset as u32);
    let conversion = run(&[
        (0, to_server(isn, TCP_SYN, &[])),
        (10, to_server(at(0), ACK, &data[..64])),
        // Past the wrap and ahead of a gap, then the segment across the wrap.
        (20, to_server(at(128), ACK, &data[128..])),
        (30, to_server(at(64), ACK, &data[64..128])),
        (40, to_server(at(30), ACK, &data[30..90])), // a retransmission across the wrap
        (50, to_server(at(192), TCP_FIN | ACK, &[])),
    ]);
    assert!(at(128) < 100, "the segment at 128 is past the wrap");
    assert_eq!(frame_ids(&conversion.capture), vec![1, 2, 3]);
    assert_eq!(
        kinds(&conversion.capture).last(),
        Some(&(1, KIND_CLOSE)),
        "the FIN past the wrap ended the flow"
    );
    assert_eq!(conversion.capture.records.last().unwrap().recv_ns.get(), 50);
    assert_eq!(conversion.report.stats.retransmitted_bytes, 60);
}

#[test]
fn a_flow_without_syn_starts_at_its_first_data() {
    let data = frames(1, 2);
    let conversion = run(&[
        // A pure ACK of a connection already open starts nothing.
        (0, to_server(5000, ACK, &[])),
        (10, to_server(5000, ACK, &data[..64])),
        (20, to_server(5064, ACK, &data[64..])),
        // Another connection caught mid-frame: not Rush.
        (30, to_server_from(40_001, 9000, ACK, &data[10..100])),
    ]);
    let capture = &conversion.capture;
    assert_eq!(
        kinds(capture),
        vec![
            (1, KIND_OPEN),
            (1, KIND_FRAME),
            (1, KIND_FRAME),
            (2, KIND_OPEN),
            (1, KIND_CLOSE),
            (2, KIND_CLOSE)
        ]
    );
    assert_eq!(capture.records[0].recv_ns.get(), 10, "OPEN at the first data");
    // Both end at the end of the capture, at its last packet's time.
    assert_eq!(capture.records[5].recv_ns.get(), 30);
    let stats = &conversion.report.stats;
    assert_eq!((stats.without_syn, stats.not_rush, stats.open_at_end), (2, 1, 2));
    assert!(conversion.report.warnings.lines[0].contains("not the Rush protocol at stream byte 0"));
}

#[test]
fn a_bad_header_length_stops_the_frames_of_that_flow() {
    let mut data = frames(1, 3);
    data[64 + 4] = 65; // frame 2 says 65 bytes
    let conversion = run(&[(0, to_server(1, TCP_SYN, &[])), (10, to_server(2, ACK, &data))]);
    assert_eq!(frame_ids(&conversion.capture), vec![1]);
    assert_eq!(conversion.report.stats.not_rush, 1);
    let warning = &conversion.report.warnings.lines[0];
    assert!(warning.contains("stream byte 64") && warning.contains("length is 65"), "{warning}");
}

#[test]
fn fin_waits_for_the_gap_and_rst_ends_at_once() {
    let data = frames(1, 2);
    let conversion = run(&[
        (0, to_server(0, TCP_SYN, &[])),
        // The second frame and the FIN arrive before the first frame.
        (10, to_server(65, TCP_FIN | ACK, &data[64..])),
        (20, to_server(1, ACK, &data[..64])),
        // A second connection reset by the client, one by the server.
        (30, to_server_from(40_001, 0, TCP_SYN, &[])),
        (40, to_server_from(40_001, 1, ACK, &data[..64])),
        (50, to_server_from(40_001, 65, TCP_RST, &[])),
        (60, to_server(0, TCP_SYN, &[])), // port reuse after the FIN: a new connection
        (70, to_server(1, ACK, &data[..64])),
        (80, from_server(1, TCP_RST | ACK, &[])),
    ]);
    let capture = &conversion.capture;
    assert_eq!(
        kinds(capture),
        vec![
            (1, KIND_OPEN),
            (1, KIND_FRAME),
            (1, KIND_FRAME),
            (1, KIND_CLOSE),
            (2, KIND_OPEN),
            (2, KIND_FRAME),
            (2, KIND_CLOSE),
            (3, KIND_OPEN),
            (3, KIND_FRAME),
            (3, KIND_CLOSE),
        ]
    );
    let times: Vec<u64> = capture.records.iter().map(|record| record.recv_ns.get()).collect();
    assert_eq!(times, vec![0, 20, 20, 20, 30, 40, 50, 60, 70, 80]);
    assert_eq!(conversion.report.stats.open_at_end, 0);
}

#[test]
fn late_retransmissions_after_the_fin_start_nothing_but_reused_ports_do() {
    let data = frames(1, 1);
    let conversion = run(&[
        (0, to_server(0, TCP_SYN, &[])),
        (10, to_server(1, TCP_FIN | ACK, &data)),
        (20, to_server(1, ACK, &data)), // retransmitted after the flow ended
        (30, to_server(1, TCP_FIN | ACK, &data)),
        // The same ports, data far outside the old stream, no SYN captured: a new connection.
        (40, to_server(0x8000_0000, ACK, &data)),
    ]);
    assert_eq!(
        kinds(&conversion.capture),
        vec![
            (1, KIND_OPEN),
            (1, KIND_FRAME),
            (1, KIND_CLOSE),
            (2, KIND_OPEN),
            (2, KIND_FRAME),
            (2, KIND_CLOSE)
        ]
    );
    assert_eq!(conversion.report.stats.ignored_segments, 2);
    assert_eq!(conversion.report.stats.without_syn, 1);
}

#[test]
fn a_flow_over_its_buffer_bound_is_dropped_and_counted() {
    let limits = Limits { buffered_per_flow_max: 128, ..LIMITS };
    let mut reassembler = Reassembler::with_limits(PORT, limits);
    let data = frames(1, 6);
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(CLIENT)), CLIENT_PORT);
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(SERVER)), PORT);
    let segment = |sequence: u32, flags: u8, payload: &'static [u8]| link::Segment {
        source: client,
        destination: server,
        sequence,
        flags,
        payload,
    };
    let data: &'static [u8] = data.leak();
    reassembler.segment(0, &segment(0, TCP_SYN, &[]));
    reassembler.segment(1, &segment(1, ACK, &data[..64]));
    // A gap at 64; 128 bytes held is the bound, the next byte is over it.
    reassembler.segment(2, &segment(129, ACK, &data[128..192]));
    reassembler.segment(3, &segment(193, ACK, &data[192..256]));
    reassembler.segment(4, &segment(257, ACK, &data[256..320]));
    // Its later segments, even the one that fills the gap, are ignored.
    reassembler.segment(5, &segment(65, ACK, &data[64..128]));
    let out = reassembler.finish(6);
    let kinds: Vec<u8> = out.records.iter().map(|record| record.kind).collect();
    assert_eq!(kinds, vec![KIND_OPEN, KIND_FRAME, KIND_CLOSE]);
    assert_eq!(out.records[2].recv_ns.get(), 4);
    assert_eq!((out.stats.dropped_flows, out.stats.ignored_segments), (1, 1));
    assert!(out.warnings.lines[0].contains("dropped after 1 frames"), "{:?}", out.warnings);
}

#[test]
fn flows_beyond_the_table_bound_are_refused() {
    let limits = Limits { flows_max: 1, ..LIMITS };
    let mut reassembler = Reassembler::with_limits(PORT, limits);
    let data = frames(1, 1);
    let packets = [
        to_server_from(1, 0, TCP_SYN, &[]),
        to_server_from(2, 0, TCP_SYN, &[]),
        to_server_from(2, 1, ACK, &data),
    ];
    for (time, packet) in packets.iter().enumerate() {
        let segment = link::parse(link::LINKTYPE_ETHERNET, packet).unwrap();
        reassembler.segment(time as u64, &segment);
    }
    let out = reassembler.finish(9);
    assert_eq!(out.stats.connections, 1);
    assert_eq!(out.stats.refused_flows, 1);
    assert_eq!(out.stats.ignored_segments, 1);
    assert_eq!(out.warnings.lines.len(), 1);
}

// ---- link layers ----------------------------------------------------------------------

#[test]
fn vlan_tagged_ethernet_is_unwrapped() {
    let data = frames(1, 1);
    let inner = ipv4(CLIENT, SERVER, 6, &[], &tcp(CLIENT_PORT, PORT, 1, ACK, &data));
    for tags in [&[(0x8100, 42)][..], &[(0x88a8, 7), (0x8100, 42)][..]] {
        let packet = ethernet(0x0800, tags, &inner);
        let segment = link::parse(1, &packet).unwrap();
        assert_eq!(segment.payload, &data[..]);
        assert_eq!(segment.destination.port(), PORT);
    }
    // And end to end, VLAN-tagged packets become frames.
    let tagged = |sequence: u32, flags: u8, payload: &[u8]| {
        let ip = ipv4(CLIENT, SERVER, 6, &[], &tcp(CLIENT_PORT, PORT, sequence, flags, payload));
        ethernet(0x0800, &[(0x8100, 42)], &ip)
    };
    let conversion = run(&[(0, tagged(0, TCP_SYN, &[])), (1, tagged(1, ACK, &data))]);
    assert_eq!(frame_ids(&conversion.capture), vec![1]);
    assert_eq!(
        link::parse(1, &ethernet(0x0806, &[(0x8100, 1)], &[0; 28])),
        Err(Skip::NotIp(0x0806))
    );
    assert_eq!(link::parse(1, &ethernet(0x8100, &[], &[0, 1])), Err(Skip::Truncated("VLAN tag")));
}

#[test]
fn linux_cooked_captures_sll_and_sll2() {
    let data = frames(1, 2);
    let ip = |sequence: u32, flags: u8, payload: &[u8]| {
        ipv4(CLIENT, SERVER, 6, &[], &tcp(CLIENT_PORT, PORT, sequence, flags, payload))
    };
    for (link_type, wrap) in [(113_u32, sll as fn(u16, &[u8]) -> Vec<u8>), (276, sll2)] {
        let packets = [
            (T0, wrap(0x0800, &ip(0, TCP_SYN, &[]))),
            (T0 + 5, wrap(0x0800, &ip(1, ACK, &data))),
            (T0 + 6, wrap(0x0806, &[0; 28])),
        ];
        let conversion = convert(&pcap_file(false, true, link_type, &packets)[..], PORT).unwrap();
        assert_eq!(frame_ids(&conversion.capture), vec![1, 2], "link type {link_type}");
        assert_eq!(conversion.report.skipped.get(&Skip::NotIp(0x0806)), Some(&1));
    }
}

#[test]
fn raw_ip_loopback_ipv6_options_and_fragments() {
    let body = tcp(CLIENT_PORT, PORT, 1, ACK, b"xy");
    let v4 = ipv4(CLIENT, SERVER, 6, &[1, 1, 1, 0], &body); // options: NOP NOP NOP EOL
    for link_type in [101, 12, 14, 228] {
        assert_eq!(link::parse(link_type, &v4).unwrap().payload, b"xy", "{link_type}");
    }
    // BSD loopback: AF_INET in either byte order; AF_INET6 as FreeBSD numbers it.
    let mut null = 2_u32.to_le_bytes().to_vec();
    null.extend_from_slice(&v4);
    assert_eq!(link::parse(0, &null).unwrap().payload, b"xy");
    null[..4].copy_from_slice(&2_u32.to_be_bytes());
    assert_eq!(link::parse(0, &null).unwrap().payload, b"xy");
    let (a, b) = (Ipv6Addr::LOCALHOST, Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
    let v6 = ipv6(a, b, 6, &body);
    let mut null6 = 28_u32.to_le_bytes().to_vec();
    null6.extend_from_slice(&v6);
    let segment = link::parse(0, &null6).unwrap();
    assert_eq!((segment.source.ip(), segment.destination.ip()), (IpAddr::V6(a), IpAddr::V6(b)));
    let mut loop_v4 = 2_u32.to_be_bytes().to_vec();
    loop_v4.extend_from_slice(&v4);
    assert_eq!(link::parse(108, &loop_v4).unwrap().payload, b"xy");
    let mut unknown_family = 17_u32.to_le_bytes().to_vec();
    unknown_family.extend_from_slice(&v4);
    assert_eq!(link::parse(0, &unknown_family), Err(Skip::NotIp(17)));
    // IPv6 extension headers: hop-by-hop (8 bytes), destination options (16), an atomic
    // fragment; then TCP.
    let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0];
    chain.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    chain.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
    chain.extend_from_slice(&body);
    assert_eq!(link::parse(101, &ipv6(a, b, 0, &chain)).unwrap().payload, b"xy");
    // A real fragment, ESP, UDP.
    let mut fragment = vec![6, 0, 0, 1, 0, 0, 0, 1];
    fragment.extend_from_slice(&body);
    assert_eq!(link::parse(101, &ipv6(a, b, 44, &fragment)), Err(Skip::Fragment));
    assert_eq!(link::parse(101, &ipv6(a, b, 50, &[0; 16])), Err(Skip::Ipv6Extension(50)));
    assert_eq!(link::parse(101, &ipv6(a, b, 17, &[0; 8])), Err(Skip::NotTcp(17)));
    // IPv4 fragments (more-fragments set; a later piece), UDP, and a snap length that cut
    // the packet.
    assert_eq!(
        link::parse(101, &ipv4_fragment(CLIENT, SERVER, 6, &[], 0x2000, &body)),
        Err(Skip::Fragment)
    );
    assert_eq!(
        link::parse(101, &ipv4_fragment(CLIENT, SERVER, 6, &[], 0x0010, &body)),
        Err(Skip::Fragment)
    );
    assert_eq!(link::parse(101, &ipv4(CLIENT, SERVER, 17, &[], &[0; 8])), Err(Skip::NotTcp(17)));
    assert_eq!(link::parse(101, &v4[..v4.len() - 1]), Err(Skip::Truncated("IPv4 packet")));
    assert_eq!(link::parse(101, &[0x45, 0]), Err(Skip::Truncated("IPv4 header")));
    assert_eq!(link::parse(147, &v4), Err(Skip::LinkType(147)));
    // TCP options are skipped.
    let with_options =
        tcp_with_options(CLIENT_PORT, PORT, 1, ACK, &[1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0], b"z");
    assert_eq!(
        link::parse(101, &ipv4(CLIENT, SERVER, 6, &[], &with_options)).unwrap().payload,
        b"z"
    );
    // Ethernet padding after a short IP packet is not payload.
    let mut padded = ethernet(0x0800, &[], &v4);
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(link::parse(1, &padded).unwrap().payload, b"xy");
}

// ---- files ----------------------------------------------------------------------------

#[test]
fn pcap_in_both_byte_orders_and_resolutions() {
    let data = frames(1, 1);
    let packets =
        [(T0 + 1_234_567, to_server(0, TCP_SYN, &[])), (T0 + 2_000_999, to_server(1, ACK, &data))];
    for (big_endian, nanos) in [(false, false), (true, false), (false, true), (true, true)] {
        let file = pcap_file(big_endian, nanos, 1, &packets);
        assert_eq!(pcap::detect(&file), Format::Pcap);
        let conversion = convert(&file[..], PORT).unwrap();
        let expected_start = if nanos { T0 + 1_234_567 } else { T0 + 1_234_000 };
        let expected_frame = if nanos { 766_432 } else { 766_000 };
        assert_eq!(conversion.capture.header.started_unix_ns.get(), expected_start);
        assert_eq!(frame_times(&conversion.capture), vec![expected_frame], "{big_endian} {nanos}");
        assert_eq!(conversion.report.format, Format::Pcap);
    }
}

#[test]
fn pcapng_with_two_interfaces_of_different_resolutions() {
    let data = frames(1, 3);
    let ip = |sequence: u32, flags: u8, payload: &[u8]| {
        ipv4(CLIENT, SERVER, 6, &[], &tcp(CLIENT_PORT, PORT, sequence, flags, payload))
    };
    for big_endian in [false, true] {
        let mut file = PcapNg::new(big_endian);
        let us = T0 / 1000;
        let ns = T0;
        file.interface(1, None) // Ethernet, microseconds (the default)
            .interface(276, Some(9)) // SLL2, nanoseconds
            .block(0x0bad, &[1, 2, 3, 4, 5]) // unknown: skipped
            .enhanced(0, us, &ethernet(0x0800, &[], &ip(0, TCP_SYN, &[])))
            .enhanced(1, ns + 1_500, &sll2(0x0800, &ip(1, ACK, &data[..64])))
            .enhanced(0, us + 3, &ethernet(0x0800, &[], &ip(65, ACK, &data[64..128])))
            // A simple packet block has no time: it takes the previous packet's.
            .simple(&ethernet(0x0800, &[], &ip(129, ACK, &data[128..])));
        // A second section, in the other byte order, with one interface at 2^-10 s.
        let mut second = PcapNg::new(!big_endian);
        second.interface(101, Some(0x80 | 10)).enhanced(
            0,
            (T0 / 1_000_000_000 + 1) << 10,
            &ip(193, TCP_FIN | ACK, &[]),
        );
        file.bytes.extend_from_slice(&second.bytes);
        assert_eq!(pcap::detect(&file.bytes), Format::PcapNg);
        let conversion = convert(&file.bytes[..], PORT).unwrap();
        assert_eq!(conversion.report.format, Format::PcapNg);
        assert_eq!(conversion.report.packets, 5);
        assert_eq!(frame_ids(&conversion.capture), vec![1, 2, 3]);
        assert_eq!(frame_times(&conversion.capture), vec![1_500, 3_000, 3_000]);
        let close = conversion.capture.records.last().unwrap();
        assert_eq!((close.kind, close.recv_ns.get()), (KIND_CLOSE, 1_000_000_000));
    }
}

#[test]
fn reader_reports_packets_with_offsets_and_lengths() {
    let file = pcap_file(false, false, 113, &[(T0, vec![1, 2, 3]), (T0 + 1000, vec![4; 70])]);
    let mut reader = PacketReader::new(&file[..]).unwrap();
    let first = reader.next_packet().unwrap().unwrap();
    assert_eq!(
        (first.offset, first.link_type, first.data, first.timestamp_ns),
        (24, 113, &[1, 2, 3][..], T0)
    );
    let second = reader.next_packet().unwrap().unwrap();
    assert_eq!((second.offset, second.data.len(), second.original_length), (24 + 16 + 3, 70, 70));
    assert!(reader.next_packet().unwrap().is_none());
}

/// The error converting `bytes`, as text, checked to be the expected variant.
fn error_of(bytes: &[u8]) -> PcapError {
    match convert(bytes, PORT) {
        Ok(_) => panic!("converted a corrupt file"),
        Err(error) => error,
    }
}

#[test]
fn corrupt_and_truncated_files_are_errors_that_name_the_offset() {
    let data = frames(1, 1);
    let good = pcap_file(
        false,
        false,
        1,
        &[(T0, to_server(0, TCP_SYN, &[])), (T0, to_server(1, ACK, &data))],
    );
    let first_record = 24 + 16 + to_server(0, TCP_SYN, &[]).len();

    let error = error_of(b"RUSHCAP1 and more");
    assert!(matches!(error, PcapError::UnknownMagic { .. }), "{error}");
    assert!(error.to_string().contains("52 55 53 48"), "{error}");
    assert!(matches!(error_of(&[0xd4, 0xc3]), PcapError::Truncated { offset: 0, .. }));
    assert!(matches!(error_of(&good[..20]), PcapError::Truncated { offset: 0, available: 20, .. }));

    // Cut inside the second record's header, then inside its bytes.
    let error = error_of(&good[..first_record + 10]);
    assert!(
        matches!(error, PcapError::Truncated { offset, available: 10, .. } if offset == first_record as u64),
        "{error}"
    );
    assert!(error.to_string().contains(&format!("byte offset {first_record}")), "{error}");
    let error = error_of(&good[..good.len() - 1]);
    assert!(
        matches!(error, PcapError::Truncated { offset, .. } if offset == first_record as u64),
        "{error}"
    );

    let mut version = good.clone();
    version[4] = 3;
    assert!(matches!(error_of(&version), PcapError::Version { major: 3, minor: 4, .. }));
    let mut huge = good.clone();
    huge[first_record + 8..first_record + 12].copy_from_slice(&0x7fff_ffff_u32.to_le_bytes());
    let error = error_of(&huge);
    assert!(
        matches!(error, PcapError::Corrupt { offset, .. } if offset == first_record as u64),
        "{error}"
    );
    let mut fraction = good.clone();
    fraction[24 + 4..24 + 8].copy_from_slice(&1_000_000_u32.to_le_bytes());
    assert!(matches!(error_of(&fraction), PcapError::Corrupt { offset: 24, .. }));

    // pcapng.
    let mut file = PcapNg::new(false);
    file.interface(1, Some(9)).enhanced(0, T0, &to_server(0, TCP_SYN, &[]));
    let good = file.bytes.clone();
    let idb = 28; // the SHB is 28 bytes
    let epb = idb + 40;
    assert_eq!(convert(&good[..], PORT).unwrap().report.packets, 1);
    assert!(matches!(error_of(&good[..10]), PcapError::Truncated { offset: 0, .. }));
    let error = error_of(&good[..good.len() - 3]);
    assert!(
        matches!(error, PcapError::Truncated { offset, .. } if offset == epb as u64),
        "{error}"
    );
    let mut order = good.clone();
    order[8] = 0x99; // the byte-order magic
    let error = error_of(&order);
    assert!(
        matches!(error, PcapError::Corrupt { offset: 0, .. })
            && error.to_string().contains("malformed section header block"),
        "{error}"
    );
    let mut version = good.clone();
    version[12] = 2;
    assert!(matches!(error_of(&version), PcapError::Version { offset: 0, major: 2, .. }));
    let mut trailer = good.clone();
    let last = trailer.len() - 4;
    trailer[last] ^= 4;
    let error = error_of(&trailer);
    assert!(
        matches!(error, PcapError::Corrupt { offset, .. } if offset == epb as u64)
            && error.to_string().contains("malformed enhanced packet block"),
        "{error}"
    );
    let mut odd_length = good.clone();
    odd_length[idb + 4] = 47;
    let error = error_of(&odd_length);
    assert!(matches!(error, PcapError::Corrupt { offset, .. } if offset == idb as u64), "{error}");
    let mut interface = good.clone();
    interface[epb + 8] = 5;
    let error = error_of(&interface);
    assert!(
        error.to_string().contains("names interface 5, but the section describes 1"),
        "{error}"
    );
    let mut captured = good.clone();
    captured[epb + 20..epb + 24].copy_from_slice(&10_000_u32.to_le_bytes());
    let error = error_of(&captured);
    assert!(matches!(error, PcapError::Corrupt { offset, .. } if offset == epb as u64), "{error}");
    assert!(error.to_string().contains("run past its total length"), "{error}");
    let mut option = good.clone();
    // The if_name option of the IDB claims 200 bytes: the if_tsresol after it is lost.
    option[idb + 16 + 2] = 200;
    let error = error_of(&option);
    assert!(error.to_string().contains("options do not parse"), "{error}");
    assert!(matches!(error, PcapError::Corrupt { offset, .. } if offset == idb as u64));
    // A packet before any interface.
    let mut no_interface = PcapNg::new(false);
    no_interface.enhanced(0, 0, &[0; 4]);
    assert!(error_of(&no_interface.bytes).to_string().contains("describes 0"));
    // A timestamp too large for u64 nanoseconds.
    let mut far = PcapNg::new(false);
    far.interface(1, Some(0)).enhanced(0, u64::MAX, &[0; 4]);
    assert!(error_of(&far.bytes).to_string().contains("out of range"));
    // An unknown block cut short.
    let mut unknown = PcapNg::new(false);
    unknown.block(0x0bad, &[0; 64]);
    let cut = unknown.bytes.len() - 10;
    assert!(matches!(error_of(&unknown.bytes[..cut]), PcapError::Truncated { offset: 28, .. }));
}

/// Records and blocks larger than the reader's first buffer (64 KiB) grow it; a pcapng
/// block whose fields claim more than its length, deep in a file larger than the buffer,
/// is refused instead of reading (or, with the buffer full, waiting) forever; and the
/// obsolete Packet Block, which pcap-parser passes on unparsed, is decoded.
#[test]
fn large_blocks_grow_the_buffer_and_bad_lengths_in_large_files_are_refused() {
    use std::sync::mpsc;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        // A 200 KiB packet between two small ones, in a pcap and in a pcapng.
        let big = vec![0x5a_u8; 200 << 10];
        let packets = [(T0, vec![1_u8; 60]), (T0 + 1, big.clone()), (T0 + 2, vec![2; 60])];
        let pcap = pcap_file(false, true, 1, &packets);
        let mut reader = PacketReader::new(&pcap[..]).unwrap();
        let mut lengths = Vec::new();
        while let Some(packet) = reader.next_packet().unwrap() {
            lengths.push(packet.data.len());
        }
        assert_eq!(lengths, vec![60, 200 << 10, 60]);
        let mut file = PcapNg::new(false);
        file.interface(1, Some(9));
        for (time, data) in &packets {
            file.enhanced(0, *time, data);
        }
        let mut reader = PacketReader::new(&file.bytes[..]).unwrap();
        let mut lengths = Vec::new();
        while let Some(packet) = reader.next_packet().unwrap() {
            lengths.push(packet.data.len());
        }
        assert_eq!(lengths, vec![60, 200 << 10, 60]);
        // 3000 small packets (over 64 KiB), the 2000th claiming 10,000 captured bytes.
        let mut file = PcapNg::new(false);
        file.interface(1, Some(9));
        let mut corrupt_at = 0;
        for index in 0..3000_u64 {
            if index == 1999 {
                corrupt_at = file.bytes.len();
            }
            file.enhanced(0, T0 + index, &[7; 40]);
        }
        file.bytes[corrupt_at + 20..corrupt_at + 24].copy_from_slice(&10_000_u32.to_le_bytes());
        let error = error_of(&file.bytes);
        let _ = sender.send((error.to_string(), corrupt_at));
    });
    let (error, corrupt_at) =
        receiver.recv_timeout(std::time::Duration::from_secs(60)).expect("the reader finished");
    assert!(
        error.contains(&format!("byte offset {corrupt_at}: malformed enhanced packet block"))
            && error.contains("its fields run past its total length"),
        "{error}"
    );

    // The obsolete Packet Block: interface id, drops, timestamp, lengths, packet.
    for big_endian in [false, true] {
        let mut file = PcapNg::new(big_endian);
        file.interface(1, Some(9));
        let data = to_server(0, TCP_SYN, &[]);
        let mut body = file.u16(0).to_vec();
        body.extend_from_slice(&file.u16(0));
        body.extend_from_slice(&file.u32((T0 >> 32) as u32));
        body.extend_from_slice(&file.u32(T0 as u32));
        body.extend_from_slice(&file.u32(data.len() as u32));
        body.extend_from_slice(&file.u32(data.len() as u32));
        body.extend_from_slice(&data);
        file.block(2, &body);
        let mut reader = PacketReader::new(&file.bytes[..]).unwrap();
        let packet = reader.next_packet().unwrap().expect("the packet block's packet");
        assert_eq!((packet.timestamp_ns, packet.data, packet.link_type), (T0, &data[..], 1));
        assert!(reader.next_packet().unwrap().is_none());
    }
}

/// Pins a panic the fuzz target `pcap_import` found: a pcapng block of type 0x80000001
/// (Process Information) with a total length of 4 to 11 made pcap-parser 0.17 subtract 12
/// from it ("attempt to subtract with overflow" with overflow checks, a length near 4 GiB
/// without). Every block shorter than 12 bytes is refused, naming its offset and length.
#[test]
fn a_pcapng_block_shorter_than_its_header_is_refused() {
    // The fuzz target's input, minimised: a big-endian section, then the short block.
    let mut found = PcapNg::new(true);
    found.bytes.extend_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 4, 3, 1, 0xff, 0x2c]);
    let error = convert(&found.bytes[..], PORT).expect_err("refused");
    let message = error.to_string();
    assert!(matches!(error, PcapError::Corrupt { offset: 28, .. }), "{message}");
    assert!(message.contains("total length 4 (at least 12"), "{message}");
    for big_endian in [false, true] {
        for block_type in [0x8000_0001, 0x8000_0002, 6, 3, 2, 1] {
            for length in 0..12 {
                let mut file = PcapNg::new(big_endian);
                let (block_type, length) = (file.u32(block_type), file.u32(length));
                file.bytes.extend_from_slice(&block_type);
                file.bytes.extend_from_slice(&length);
                file.bytes.extend_from_slice(&[0; 16]);
                let error = convert(&file.bytes[..], PORT).expect_err("a short block");
                assert!(matches!(error, PcapError::Corrupt { offset: 28, .. }), "{error}");
            }
        }
        // A Process Information Block of 16 bytes (a process id, no options) is skipped like
        // any block that holds no packet.
        let mut file = PcapNg::new(big_endian);
        file.block(0x8000_0001, &[0, 0, 0, 7]);
        let conversion = convert(&file.bytes[..], PORT).expect("a process information block");
        assert_eq!(conversion.report.packets, 0);
    }
}

/// The real captures of tests/data, cut at every length and with every byte corrupted:
/// each is converted or refused with an error, never a panic; a cut file converts only when
/// the cut falls between two records or blocks.
#[test]
fn every_truncation_and_corruption_of_real_captures_is_handled() {
    let files: [(&str, &[u8]); 3] = [
        ("session.pcap", include_bytes!("../../tests/data/session.pcap")),
        ("session-ns.pcapng", include_bytes!("../../tests/data/session-ns.pcapng")),
        ("lossy.pcap", include_bytes!("../../tests/data/lossy.pcap")),
    ];
    for (name, bytes) in files {
        // Where a file may end: after the file header (pcap) or the first block (pcapng,
        // little-endian here), then between records or blocks.
        let mut boundaries = vec![];
        if pcap::detect(bytes) == Format::PcapNg {
            let mut at = 0;
            while at < bytes.len() {
                at += u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
                boundaries.push(at);
            }
        } else {
            let mut reader = PacketReader::new(bytes).unwrap();
            boundaries.push(24);
            while let Some(packet) = reader.next_packet().unwrap() {
                boundaries.push(packet.offset as usize);
            }
        }
        boundaries.push(bytes.len());
        for length in 0..bytes.len() {
            let result = convert(&bytes[..length], PORT);
            if boundaries.contains(&length) {
                assert!(result.is_ok(), "{name} cut at {length}: {:?}", result.err());
            } else {
                assert!(result.is_err(), "{name} cut at {length} converted");
            }
        }
        let mut corrupted = bytes.to_vec();
        for at in 0..corrupted.len() {
            for flip in [0xff, 0x80, 0x01] {
                corrupted[at] ^= flip;
                let _ = convert(&corrupted[..], PORT);
                corrupted[at] ^= flip;
            }
        }
        // Random multi-byte damage (xorshift, fixed seed).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let mut damaged = bytes.to_vec();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % damaged.len() as u64) as usize;
                damaged[at] = (state >> 32) as u8;
            }
            let _ = convert(&damaged[..], PORT);
        }
    }
}

// ---- loading Rush captures --------------------------------------------------------------

/// A file of this test process in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("rush-capture-unit-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write the temporary file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A capture's file bytes, as `rush serve --capture` writes them.
fn capture_bytes(records: &[rush_net::capture::Record]) -> Vec<u8> {
    let file = TempFile::new("written.rushcap", &[]);
    rush_net::capture::write_capture(&file.0, T0, records).expect("write the capture");
    std::fs::read(&file.0).expect("read it back")
}

fn load_error(name: &str, bytes: &[u8]) -> String {
    let file = TempFile::new(name, bytes);
    let error = super::load(&file.0, None).expect_err("refused");
    format!("{error:#}")
}

/// Pins a hang the fuzz run found: one FRAME record of a valid capture with bit 62 set in
/// its `recv_ns` was accepted, and `rush replay --target` announced "12 frames over
/// 4611686018.610 s", sent what was due and waited ~146 years for the rest.
#[test]
fn a_capture_spanning_more_than_a_week_is_refused_naming_the_record() {
    use rush_net::capture::Record;
    let mut request = Vec::new();
    encode_request(7, &Request::Ping, &mut request);
    let records = |late_ns: u64| {
        vec![
            Record::new(0, 1, KIND_OPEN, false, 0, &[]),
            Record::new(1_000, 1, KIND_FRAME, false, 0, &request),
            Record::new(late_ns, 1, KIND_FRAME, false, 0, &request),
            Record::new(3_000, 1, KIND_CLOSE, false, 0, &[]),
        ]
    };
    let message = load_error("far.rushcap", &capture_bytes(&records(2_000 | 1 << 62)));
    assert!(message.contains("cannot be replayed"), "{message}");
    assert!(
        message.contains("record 2 (FRAME of connection 0x1) has recv_ns 4611686018427389904"),
        "{message}"
    );
    assert!(message.contains("after record 0 (recv_ns 0)"), "{message}");
    assert!(message.contains("at most 7 days"), "{message}");
    // A week exactly is accepted; the replay's plan then bounds what the flags make of it.
    let week = super::CAPTURE_SPAN_NS_MAX;
    let file = TempFile::new("week.rushcap", &capture_bytes(&records(week)));
    let (capture, _) = super::load(&file.0, None).expect("a week is accepted");
    assert_eq!(capture.records.len(), 4);
    assert!(super::check_span(&capture).is_ok());
    let mut longer = capture.clone();
    longer.records[2].recv_ns = rush_net::protocol::wire::U64Le::new(week + 1);
    assert_eq!(super::check_span(&longer).map_err(|error| error.latest), Err((2, week + 1)));
}

/// Pins a wrong diagnosis the fuzz run found: `RUSHCAP1` followed by two bytes was reported
/// as "magic is not RUSHCAP1".
#[test]
fn a_truncated_capture_header_is_reported_as_truncated() {
    let mut cut = b"RUSHCAP1".to_vec();
    cut.extend_from_slice(&[1, 0]);
    for (name, bytes) in [("ten.rushcap", &cut[..]), ("four.rushcap", &b"RUSH"[..])] {
        let message = load_error(name, bytes);
        assert!(message.contains("is a truncated Rush capture"), "{message}");
        assert!(
            message.contains(&format!("it ends after {} bytes, inside the 64-byte", bytes.len())),
            "{message}"
        );
        assert!(!message.contains("magic"), "{message}");
    }
    // A whole header and no records is a valid, empty capture.
    let file = TempFile::new("empty.rushcap", &capture_bytes(&[]));
    let (capture, report) = super::load(&file.0, None).expect("an empty capture");
    assert!(capture.records.is_empty() && report.is_none());
}
