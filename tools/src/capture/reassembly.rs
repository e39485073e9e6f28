//! TCP stream reassembly of the client→server direction, cut into 64-byte request frames.
//!
//! A *flow* is one captured connection: the segments sent to the server's port from one
//! client address and port. For each flow the reassembler
//!
//! - starts the stream at the SYN (the data starts at ISN + 1), or, for a connection whose
//!   SYN the capture missed, at its first data segment;
//! - delivers in-order bytes at once, keeps out-of-order segments until the gap before them
//!   fills, and trims retransmitted and overlapping bytes so that no byte is delivered twice
//!   (the first copy captured wins);
//! - computes stream offsets in 64 bits from 32-bit sequence numbers by their signed
//!   wrapping distance to the next expected byte, so the wrap from 2^32 - 1 to 0 (and
//!   streams beyond 4 GiB) need no special case;
//! - cuts the stream into 64-byte frames (every Rush request frame is 64 bytes), checking
//!   each frame's magic `52 53` and header length 64: a stream that fails is counted as not
//!   Rush and yields no more frames;
//! - ends the flow at a RST (either direction), at a FIN once every byte before it has been
//!   delivered, or at the end of the capture.
//!
//! Output: an OPEN record when the flow starts, a FRAME record per frame, stamped with the
//! capture time of the packet that completed it, and a CLOSE record at the end. Times are
//! absolute (Unix ns) here; the converter makes them relative.
//!
//! Bounds ([`LIMITS`]): flows open at once, out-of-order bytes held per flow and in total,
//! and closed flows remembered (to tell a late retransmission from a new connection). A
//! flow that would exceed them is dropped (CLOSE recorded), counted, and warned about; its
//! later segments are ignored until a new SYN on the same ports.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use rush_net::capture::{Record, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::protocol::{MAGIC, REQUEST_SIZE};

use super::link::{Segment, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// (client, server): the key of a flow.
pub type FlowKey = (SocketAddr, SocketAddr);

/// The reassembler's memory bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Flows open at once. A new flow beyond it is refused: not recorded at all.
    pub flows_max: usize,
    /// Out-of-order bytes one flow may hold while waiting for a gap to fill. A flow that
    /// would hold more is dropped: the gap is most likely bytes the capture never saw.
    pub buffered_per_flow_max: usize,
    /// Out-of-order bytes all flows together may hold; the flow whose segment would pass it
    /// is dropped.
    pub buffered_total_max: usize,
    /// Ended flows remembered, so that a retransmission seen after a flow's FIN is ignored
    /// rather than taken for a new connection without SYN. The oldest is forgotten first.
    pub closed_remembered_max: usize,
}

/// The bounds `rush capture` uses: at most 65,536 open flows (each a few hundred bytes
/// plus what it buffers), 4 MiB out of order per flow, 256 MiB in total, 65,536 ended flows
/// remembered.
pub const LIMITS: Limits = Limits {
    flows_max: 65_536,
    buffered_per_flow_max: 4 << 20,
    buffered_total_max: 256 << 20,
    closed_remembered_max: 65_536,
};

/// Warning lines kept; further warnings are only counted (a capture of another protocol
/// on the port would otherwise print one per connection).
pub const WARNINGS_MAX: usize = 50;

/// What the reassembler saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP segments sent to the server's port.
    pub to_server_segments: u64,
    /// TCP segments sent from the server's port (read for RST only).
    pub from_server_segments: u64,
    /// TCP segments between other ports.
    pub other_segments: u64,
    /// Flows recorded (one OPEN each).
    pub connections: u64,
    /// Of those, flows whose SYN was not captured (they start at their first data).
    pub without_syn: u64,
    /// FRAME records.
    pub frames: u64,
    /// Flows whose stream stopped being Rush frames (bad magic or length).
    pub not_rush: u64,
    /// Segments that arrived ahead of a gap and were held until it filled.
    pub out_of_order_segments: u64,
    /// Bytes captured again after they had been delivered (retransmissions, overlaps).
    pub retransmitted_bytes: u64,
    /// Segments of ended or dropped flows, ignored.
    pub ignored_segments: u64,
    /// Flows dropped for holding too many out-of-order bytes.
    pub dropped_flows: u64,
    /// Flows refused because [`Limits::flows_max`] flows were open.
    pub refused_flows: u64,
    /// Bytes held after a gap that never filled, when their flow ended.
    pub gap_bytes: u64,
    /// Bytes of an incomplete last frame when a flow ended.
    pub trailing_bytes: u64,
    /// Flows still open at the end of the capture (closed there).
    pub open_at_end: u64,
}

/// Warning lines, capped at [`WARNINGS_MAX`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warnings {
    pub lines: Vec<String>,
    /// Warnings past the cap, counted only.
    pub suppressed: u64,
}

impl Warnings {
    fn push(&mut self, line: String) {
        if self.lines.len() < WARNINGS_MAX {
            self.lines.push(line);
        } else {
            self.suppressed += 1;
        }
    }
}

/// Everything the reassembler produced.
#[derive(Clone, Debug, Default)]
pub struct Reassembled {
    /// OPEN, FRAME and CLOSE records in the order they happened, `recv_ns` absolute (Unix
    /// ns).
    pub records: Vec<Record>,
    pub stats: Stats,
    pub warnings: Warnings,
}

/// What all flows share: the output and the total of buffered bytes.
#[derive(Debug, Default)]
struct Shared {
    out: Reassembled,
    buffered_total: usize,
}

/// One connection being reassembled.
#[derive(Debug)]
struct Flow {
    key: FlowKey,
    connection: u64,
    /// Whether the flow started at a SYN (else at its first data segment).
    syn: bool,
    /// The sequence number of stream byte 0.
    base: u32,
    /// Stream bytes delivered so far: the offset of the next expected byte.
    delivered: u64,
    /// The highest stream offset seen (end of data, or the FIN).
    seen_end: u64,
    /// Out-of-order segments by stream offset, each > `delivered` when inserted.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// The stream offset of the FIN, once seen.
    fin_at: Option<u64>,
    /// The frame being assembled (fewer than 64 bytes between calls).
    frame: Vec<u8>,
    frames: u64,
    /// False once the stream failed the Rush framing checks.
    rush: bool,
}

/// The flow held more out-of-order bytes than allowed.
#[derive(Debug)]
struct Overflow {
    total: bool,
}

impl Flow {
    fn describe(&self) -> String {
        format!("connection {} ({} -> {})", self.connection, self.key.0, self.key.1)
    }

    /// The stream offset of `sequence`: the signed 32-bit distance from the next expected
    /// sequence number, added to the 64-bit count of bytes delivered. Negative for bytes
    /// before the stream's start.
    fn offset_of(&self, sequence: u32) -> i64 {
        // Truncating `delivered` to 32 bits is the point: sequence numbers are modulo 2^32.
        let expected = self.base.wrapping_add(self.delivered as u32);
        self.delivered as i64 + i64::from(sequence.wrapping_sub(expected) as i32)
    }

    /// Takes the segment `payload` at stream `offset`.
    fn receive(
        &mut self,
        offset: i64,
        payload: &[u8],
        time_ns: u64,
        limits: &Limits,
        shared: &mut Shared,
    ) -> Result<(), Overflow> {
        let length = payload.len() as i64;
        let end = offset + length;
        let delivered = self.delivered as i64;
        if end <= delivered {
            shared.out.stats.retransmitted_bytes += length as u64;
            return Ok(());
        }
        self.seen_end = self.seen_end.max(end as u64);
        if offset > delivered {
            return self.hold(offset as u64, payload, limits, shared);
        }
        // `offset <= delivered < end`: the first `delivered - offset` bytes came before.
        let already = (delivered - offset) as usize;
        shared.out.stats.retransmitted_bytes += already as u64;
        self.deliver(&payload[already..], time_ns, shared);
        // Release the held segments the new bytes reached.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.delivered {
                break;
            }
            let (start, bytes) = entry.remove_entry();
            self.pending_bytes -= bytes.len();
            shared.buffered_total -= bytes.len();
            let end = start + bytes.len() as u64;
            if end <= self.delivered {
                shared.out.stats.retransmitted_bytes += bytes.len() as u64;
                continue;
            }
            let already = (self.delivered - start) as usize;
            shared.out.stats.retransmitted_bytes += already as u64;
            self.deliver(&bytes[already..], time_ns, shared);
        }
        Ok(())
    }

    /// Holds a segment that starts after a gap.
    fn hold(
        &mut self,
        offset: u64,
        payload: &[u8],
        limits: &Limits,
        shared: &mut Shared,
    ) -> Result<(), Overflow> {
        // Two segments at the same offset: keep the longer (a retransmission that carries
        // more); the bytes they share are the same in a correct TCP.
        let replaced = self.pending.get(&offset).map_or(0, Vec::len);
        if replaced >= payload.len() {
            shared.out.stats.retransmitted_bytes += payload.len() as u64;
            return Ok(());
        }
        let growth = payload.len() - replaced;
        if self.pending_bytes + growth > limits.buffered_per_flow_max {
            return Err(Overflow { total: false });
        }
        if shared.buffered_total + growth > limits.buffered_total_max {
            return Err(Overflow { total: true });
        }
        shared.out.stats.retransmitted_bytes += replaced as u64;
        shared.out.stats.out_of_order_segments += 1;
        self.pending.insert(offset, payload.to_vec());
        self.pending_bytes += growth;
        shared.buffered_total += growth;
        Ok(())
    }

    /// Appends in-order stream bytes and records each frame they complete.
    fn deliver(&mut self, mut bytes: &[u8], time_ns: u64, shared: &mut Shared) {
        self.delivered += bytes.len() as u64;
        while self.rush && !bytes.is_empty() {
            let take = (REQUEST_SIZE - self.frame.len()).min(bytes.len());
            self.frame.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if let Some(reason) = framing_error(&self.frame) {
                self.rush = false;
                self.frame.clear();
                shared.out.stats.not_rush += 1;
                shared.out.warnings.push(format!(
                    "{}: not the Rush protocol at stream byte {} ({reason}); no more frames \
                     are taken from it",
                    self.describe(),
                    self.frames * REQUEST_SIZE as u64
                ));
            } else if self.frame.len() == REQUEST_SIZE {
                shared.out.records.push(Record::new(
                    time_ns,
                    self.connection,
                    KIND_FRAME,
                    false,
                    0,
                    &self.frame,
                ));
                shared.out.stats.frames += 1;
                self.frames += 1;
                self.frame.clear();
            }
        }
    }
}

/// Why the bytes of a frame so far cannot be a Rush request frame, if they cannot.
fn framing_error(frame: &[u8]) -> Option<String> {
    let magic = MAGIC.to_le_bytes();
    if let Some(start) = frame.get(..2) {
        if start != magic {
            return Some(format!(
                "the frame starts {:02x} {:02x}, not the magic {:02x} {:02x}",
                start[0], start[1], magic[0], magic[1]
            ));
        }
    }
    if let Some(&[low, high]) = frame.get(4..6) {
        let length = u16::from_le_bytes([low, high]);
        if usize::from(length) != REQUEST_SIZE {
            return Some(format!("the header's length is {length}, not {REQUEST_SIZE}"));
        }
    }
    None
}

/// How an ended flow is remembered.
#[derive(Clone, Copy, Debug)]
enum Ended {
    /// It ended normally: segments in `base .. base + length` (sequence numbers, modulo
    /// 2^32: the bytes and the FIN it carried) are late retransmissions.
    At { base: u32, length: u64 },
    /// It was dropped or refused: everything until a new SYN is ignored.
    Dropped,
}

/// Reassembles the client→server streams of one server port.
#[derive(Debug)]
pub struct Reassembler {
    port: u16,
    limits: Limits,
    flows: HashMap<FlowKey, Flow>,
    /// Ended flows with the stamp of their entry in `ended_order`.
    ended: HashMap<FlowKey, (Ended, u64)>,
    /// Ended flows, oldest first, with a stamp: an entry whose stamp no longer matches
    /// `ended` is stale (the flow was forgotten or ended again) and is skipped.
    ended_order: VecDeque<(FlowKey, u64)>,
    ended_stamp: u64,
    next_connection: u64,
    /// The first refusal is warned about; later ones are counted.
    warned_refusal: bool,
    shared: Shared,
}

impl Reassembler {
    /// A reassembler for the server port `port` with the bounds of [`LIMITS`].
    pub fn new(port: u16) -> Reassembler {
        Reassembler::with_limits(port, LIMITS)
    }

    pub fn with_limits(port: u16, limits: Limits) -> Reassembler {
        Reassembler {
            port,
            limits,
            flows: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            ended_stamp: 0,
            next_connection: 1,
            warned_refusal: false,
            shared: Shared::default(),
        }
    }

    /// Takes one captured segment, captured at `time_ns`.
    pub fn segment(&mut self, time_ns: u64, segment: &Segment<'_>) {
        if segment.destination.port() != self.port {
            if segment.source.port() == self.port {
                self.shared.out.stats.from_server_segments += 1;
                // The server's RST ends the connection for both sides.
                if segment.has(TCP_RST) {
                    self.close(
                        (segment.destination, segment.source),
                        time_ns,
                        "reset by the server",
                    );
                }
            } else {
                self.shared.out.stats.other_segments += 1;
            }
            return;
        }
        self.shared.out.stats.to_server_segments += 1;
        let key = (segment.source, segment.destination);
        let mut data_sequence = segment.sequence;
        if segment.has(TCP_SYN) && !segment.has(TCP_ACK) {
            // The SYN takes one sequence number; data (TCP Fast Open) starts after it.
            data_sequence = segment.sequence.wrapping_add(1);
            let retransmitted =
                self.flows.get(&key).map(|flow| flow.syn && flow.base == data_sequence);
            match retransmitted {
                // The same SYN again: the flow goes on.
                Some(true) => {}
                // Another SYN on the same ports: the old connection is gone.
                Some(false) => {
                    self.close(key, time_ns, "a new SYN on the same ports");
                    self.open(key, data_sequence, true, time_ns);
                }
                None => {
                    self.ended.remove(&key);
                    self.open(key, data_sequence, true, time_ns);
                }
            }
        } else if !self.flows.contains_key(&key) {
            // Pure ACKs, RSTs and FINs without data start nothing.
            if segment.has(TCP_RST) || segment.payload.is_empty() {
                return;
            }
            match self.ended.get(&key) {
                Some((Ended::Dropped, _)) => {
                    self.shared.out.stats.ignored_segments += 1;
                    return;
                }
                // Within the ended stream's sequence range: a late retransmission. (Past
                // it: the ports reused by a connection whose SYN was not captured.)
                Some(&(Ended::At { base, length }, _))
                    if u64::from(segment.sequence.wrapping_sub(base)) < length =>
                {
                    self.shared.out.stats.ignored_segments += 1;
                    return;
                }
                _ => {}
            }
            self.ended.remove(&key);
            if self.open(key, data_sequence, false, time_ns) {
                self.shared.out.stats.without_syn += 1;
            }
        }
        if segment.has(TCP_RST) {
            self.close(key, time_ns, "reset by the client");
            return;
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return; // Refused (too many flows).
        };
        let offset = flow.offset_of(data_sequence);
        if !segment.payload.is_empty() {
            if let Err(overflow) =
                flow.receive(offset, segment.payload, time_ns, &self.limits, &mut self.shared)
            {
                self.drop_flow(key, time_ns, &overflow);
                return;
            }
        }
        if segment.has(TCP_FIN) {
            let fin_at = offset + segment.payload.len() as i64;
            if fin_at >= 0 && flow.fin_at.is_none() {
                flow.fin_at = Some(fin_at as u64);
                flow.seen_end = flow.seen_end.max(fin_at as u64 + 1);
            }
        }
        if flow.fin_at.is_some_and(|fin_at| fin_at <= flow.delivered) {
            self.close(key, time_ns, "FIN");
        }
    }

    /// Ends every open flow (CLOSE at `end_ns`, the capture's last packet) and returns the
    /// output.
    pub fn finish(mut self, end_ns: u64) -> Reassembled {
        let mut open: Vec<(u64, FlowKey)> =
            self.flows.values().map(|flow| (flow.connection, flow.key)).collect();
        open.sort_unstable();
        for (_, key) in open {
            self.shared.out.stats.open_at_end += 1;
            self.close(key, end_ns, "end of capture");
        }
        self.shared.out
    }

    /// Starts a flow; false if the flow table is full (the flow is refused).
    fn open(&mut self, key: FlowKey, base: u32, syn: bool, time_ns: u64) -> bool {
        if self.flows.len() >= self.limits.flows_max {
            self.shared.out.stats.refused_flows += 1;
            if !self.warned_refusal {
                self.warned_refusal = true;
                self.shared.out.warnings.push(format!(
                    "{} -> {}: more than {} connections open at once; it and further new \
                     connections are not recorded until some end (counted as refused)",
                    key.0, key.1, self.limits.flows_max
                ));
            }
            self.remember(key, Ended::Dropped);
            return false;
        }
        let connection = self.next_connection;
        self.next_connection += 1;
        self.shared.out.records.push(Record::new(time_ns, connection, KIND_OPEN, false, 0, &[]));
        self.shared.out.stats.connections += 1;
        self.flows.insert(
            key,
            Flow {
                key,
                connection,
                syn,
                base,
                delivered: 0,
                seen_end: 0,
                pending: BTreeMap::new(),
                pending_bytes: 0,
                fin_at: None,
                frame: Vec::with_capacity(REQUEST_SIZE),
                frames: 0,
                rush: true,
            },
        );
        true
    }

    /// Ends a flow: reports what it leaves undelivered and records its CLOSE.
    fn close(&mut self, key: FlowKey, time_ns: u64, why: &str) {
        let Some(flow) = self.flows.remove(&key) else {
            return;
        };
        self.shared.buffered_total -= flow.pending_bytes;
        let stats = &mut self.shared.out.stats;
        if flow.pending_bytes > 0 {
            stats.gap_bytes += flow.pending_bytes as u64;
            self.shared.out.warnings.push(format!(
                "{} ended ({why}) with {} bytes after a gap at stream byte {} that the \
                 capture never filled; they were not delivered",
                flow.describe(),
                flow.pending_bytes,
                flow.delivered
            ));
        }
        if flow.rush && !flow.frame.is_empty() {
            stats.trailing_bytes += flow.frame.len() as u64;
            self.shared.out.warnings.push(format!(
                "{} ended ({why}) {} bytes into a frame; they were not recorded",
                flow.describe(),
                flow.frame.len()
            ));
        }
        self.shared.out.records.push(Record::new(
            time_ns,
            flow.connection,
            KIND_CLOSE,
            false,
            0,
            &[],
        ));
        self.remember(key, Ended::At { base: flow.base, length: flow.seen_end });
    }

    /// Drops a flow that exceeded a buffer bound.
    fn drop_flow(&mut self, key: FlowKey, time_ns: u64, overflow: &Overflow) {
        let Some(flow) = self.flows.remove(&key) else {
            return;
        };
        self.shared.buffered_total -= flow.pending_bytes;
        self.shared.out.stats.dropped_flows += 1;
        let bound = if overflow.total {
            format!(
                "all connections together held {} bytes out of order",
                self.limits.buffered_total_max
            )
        } else {
            format!("it held {} bytes out of order", self.limits.buffered_per_flow_max)
        };
        self.shared.out.warnings.push(format!(
            "{} dropped after {} frames: {bound} behind a gap at stream byte {} (bytes the \
             capture most likely missed); its later segments are ignored",
            flow.describe(),
            flow.frames,
            flow.delivered
        ));
        self.shared.out.records.push(Record::new(
            time_ns,
            flow.connection,
            KIND_CLOSE,
            false,
            0,
            &[],
        ));
        self.remember(key, Ended::Dropped);
    }

    /// Remembers an ended flow, forgetting the oldest beyond the bound.
    fn remember(&mut self, key: FlowKey, ended: Ended) {
        self.ended_stamp += 1;
        self.ended.insert(key, (ended, self.ended_stamp));
        self.ended_order.push_back((key, self.ended_stamp));
        while self.ended.len() > self.limits.closed_remembered_max {
            let Some((old, stamp)) = self.ended_order.pop_front() else { break };
            if self.ended.get(&old).is_some_and(|&(_, current)| current == stamp) {
                self.ended.remove(&old);
            }
        }
        // Stale entries (flows forgotten when they reopened) would let the queue outgrow
        // the map: compact it when it is twice the bound.
        if self.ended_order.len() > 2 * self.limits.closed_remembered_max.max(1) {
            let ended = &self.ended;
            self.ended_order.retain(|(key, stamp)| {
                ended.get(key).is_some_and(|&(_, current)| current == *stamp)
            });
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "TCP segments: {} to the server port, {} from it, {} between other ports",
            self.to_server_segments, self.from_server_segments, self.other_segments
        )?;
        writeln!(
            formatter,
            "connections: {} ({} without a captured SYN, {} not Rush, {} still open at the \
             end, {} dropped, {} refused)",
            self.connections,
            self.without_syn,
            self.not_rush,
            self.open_at_end,
            self.dropped_flows,
            self.refused_flows
        )?;
        writeln!(formatter, "frames: {}", self.frames)?;
        write!(
            formatter,
            "reassembly: {} out-of-order segments held, {} retransmitted bytes trimmed, {} \
             segments of ended connections ignored, {} bytes behind unfilled gaps, {} bytes \
             of incomplete frames",
            self.out_of_order_segments,
            self.retransmitted_bytes,
            self.ignored_segments,
            self.gap_bytes,
            self.trailing_bytes
        )
    }
}
