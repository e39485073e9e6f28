//! The replay plan: what each replayed connection sends and when, computed from a capture
//! before any socket is opened (pure, so the schedule is unit-tested without a server).
//!
//! Times are nanoseconds from the start of a loop of the replay. Loop `l` adds
//! `l × loop_span_ns` to every time of the plan; [`Plan::schedule_end_ns`] checks, before
//! anything is sent, that every loop's times fit in 64 bits and in [`SCHEDULE_NS_MAX`], so
//! the driver's additions cannot overflow and a replay cannot be scheduled to wait for
//! years.

use std::collections::HashMap;
use std::fmt;

use rush_net::capture::{Capture, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::protocol::decode_request;

/// The longest schedule a replay accepts: a year. Longer is a mistake (a tiny `-x`, a tiny
/// `--rate`, many `--loop`s of a long capture), not a test anyone waits for.
pub const SCHEDULE_NS_MAX: u64 = 366 * 24 * 3600 * 1_000_000_000;

/// Why a plan cannot be replayed with the loops asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The last of `loops` loops would start or end past 2^64 - 1 ns.
    Overflow { loops: u32, loop_span_ns: u64, last_event_ns: u64 },
    /// The last event of the last loop is due `end_ns` after the start.
    TooLong { end_ns: u64 },
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScheduleError::Overflow { loops, loop_span_ns, last_event_ns } => write!(
                formatter,
                "the replay's schedule does not fit in 64-bit nanoseconds: {loops} loops \
                 {loop_span_ns} ns apart, the last event {last_event_ns} ns into a loop \
                 (check -x/--speed, --rate and --loop)"
            ),
            ScheduleError::TooLong { end_ns } => write!(
                formatter,
                "the replay's schedule would last {:.0} days, longer than the {} days a \
                 replay accepts (check -x/--speed, --rate and --loop)",
                end_ns as f64 / 86_400e9,
                SCHEDULE_NS_MAX / 86_400_000_000_000
            ),
        }
    }
}

impl std::error::Error for ScheduleError {}

/// How frames are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Each frame at `(recv_ns - first recv_ns) / speed`: the original pace times `speed`.
    Original { speed: f64 },
    /// Every frame evenly spaced at `per_second`, in global receive order.
    Rate { per_second: f64 },
    /// As fast as each connection's window of `window` frames in flight allows (closed
    /// loop); the only order kept between connections is the one the capture proves.
    TopSpeed { window: usize },
}

/// What the server will do with a frame, as far as the replay needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A well-framed request (valid, or answered BAD_REQUEST): one response with this
    /// request id.
    Reply { request_id: u64 },
    /// Bytes the server cannot frame: no response. `closes`: they are invalid (a bad
    /// magic, version, opcode or length), so the server closes the connection after them;
    /// otherwise they are the valid start of a frame whose end never came (a client that
    /// went away mid-frame), and the server waits for the rest.
    FramingFailure { closes: bool },
}

/// One captured frame, as it will be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The captured bytes (`length` of them in use), sent byte for byte.
    pub bytes: [u8; 64],
    pub length: u8,
    /// When to send it, ns from the start of the loop (unused at top speed).
    pub at_ns: u64,
    pub expect: Expect,
}

impl Frame {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.length)]
    }
}

/// One captured connection, replayed as one TCP connection per loop.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// The captured connection id.
    pub captured: u64,
    /// It came in on the admin listener (replayed to `--admin`).
    pub admin: bool,
    /// When to open it: its OPEN record's time, else its first frame's.
    pub open_ns: u64,
    /// Its CLOSE record's time: it is closed once that time has passed and every answer is
    /// in. `None`: kept open until the end of the replay.
    pub close_ns: Option<u64>,
    pub frames: Vec<Frame>,
    /// Top speed: how many connections of its loop (in [`Plan::close_order`]) must be
    /// finished before it starts: those whose CLOSE came before its OPEN in the capture.
    pub after: usize,
    /// Top speed: its position in [`Plan::close_order`].
    pub close_rank: usize,
}

/// The whole replay of one loop.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The replayed connections, in the order they open (ties: order of appearance).
    pub connections: Vec<Connection>,
    /// Indices into `connections` by captured CLOSE time (connections never closed last).
    pub close_order: Vec<usize>,
    /// Offset between loops: the capture's span at the replay's pace.
    pub loop_span_ns: u64,
    /// Frames replayed per loop.
    pub frames: u64,
    /// Admin connections left out (`--admin none`) and their frames.
    pub skipped_connections: u64,
    pub skipped_frames: u64,
    /// The longest `wait_ms` of a replayed RESERVE (its answer may take that long).
    pub max_wait_ms: u32,
}

impl Plan {
    /// The time of the plan's last event (open, frame or close) in one loop.
    pub fn last_event_ns(&self) -> u64 {
        self.connections
            .iter()
            .flat_map(|connection| {
                let frames = connection.frames.iter().map(|frame| frame.at_ns);
                frames.chain([connection.open_ns]).chain(connection.close_ns)
            })
            .max()
            .unwrap_or(0)
    }

    /// When the last event of `loops` loops is due, checked: every loop's start and every
    /// time within it fit in u64 nanoseconds, and the whole schedule in
    /// [`SCHEDULE_NS_MAX`].
    pub fn schedule_end_ns(&self, loops: u32) -> Result<u64, ScheduleError> {
        assert!(loops >= 1, "a replay has at least one loop");
        let last_event_ns = self.last_event_ns();
        let overflow =
            ScheduleError::Overflow { loops, loop_span_ns: self.loop_span_ns, last_event_ns };
        let end_ns = u64::from(loops - 1)
            .checked_mul(self.loop_span_ns)
            .and_then(|last_start_ns| last_start_ns.checked_add(last_event_ns))
            .ok_or(overflow)?;
        if end_ns > SCHEDULE_NS_MAX {
            return Err(ScheduleError::TooLong { end_ns });
        }
        Ok(end_ns)
    }

    /// When loop `loop_index` (from 0) starts. Only for loops [`Plan::schedule_end_ns`]
    /// accepted, so the product fits.
    pub fn loop_offset_ns(&self, loop_index: u32) -> u64 {
        let offset_ns = u64::from(loop_index).checked_mul(self.loop_span_ns);
        offset_ns.expect("schedule_end_ns checked that every loop's start fits in u64 ns")
    }
}

/// Builds the plan of `capture` at `pace`, leaving the admin connections out when
/// `skip_admin`.
pub fn build(capture: &Capture, pace: Pace, skip_admin: bool) -> Plan {
    // Each connection's records, in file order (which is its receive order).
    let mut index_of: HashMap<u64, usize> = HashMap::new();
    let mut grouped: Vec<(u64, bool, Vec<usize>)> = Vec::new();
    for (position, record) in capture.records.iter().enumerate() {
        let id = record.connection.get();
        let slot = *index_of.entry(id).or_insert_with(|| {
            grouped.push((id, false, Vec::new()));
            grouped.len() - 1
        });
        grouped[slot].1 |= record.admin == 1;
        grouped[slot].2.push(position);
    }
    let (mut skipped_connections, mut skipped_frames) = (0, 0);
    grouped.retain(|(_, admin, records)| {
        if skip_admin && *admin {
            skipped_connections += 1;
            skipped_frames +=
                records.iter().filter(|&&i| capture.records[i].kind == KIND_FRAME).count() as u64;
            return false;
        }
        true
    });

    let records = &capture.records;
    let recv = |index: usize| records[index].recv_ns.get();
    let first = grouped.iter().flat_map(|(_, _, list)| list).map(|&i| recv(i)).min().unwrap_or(0);
    let last = grouped.iter().flat_map(|(_, _, list)| list).map(|&i| recv(i)).max().unwrap_or(0);
    // Every kept frame in global receive order (ties: file order): the `--rate` sequence.
    let mut frame_times: Vec<(u64, usize)> = grouped
        .iter()
        .flat_map(|(_, _, list)| list)
        .filter(|&&i| records[i].kind == KIND_FRAME)
        .map(|&i| (recv(i), i))
        .collect();
    frame_times.sort_unstable();
    let rank: HashMap<usize, usize> =
        frame_times.iter().enumerate().map(|(rank, &(_, index))| (index, rank)).collect();
    let at_rate = |count: usize, per_second: f64| (count as f64 * 1e9 / per_second) as u64;
    // An OPEN or CLOSE at `t` under --rate: at the slot of the first frame received after it
    // (an OPEN) or after every frame received up to it (a CLOSE).
    let event_at = |t: u64, closing: bool| -> u64 {
        match pace {
            Pace::Original { speed } => ((t - first) as f64 / speed) as u64,
            Pace::Rate { per_second } => {
                let count = if closing {
                    frame_times.partition_point(|&(time, _)| time <= t)
                } else {
                    frame_times.partition_point(|&(time, _)| time < t)
                };
                at_rate(count, per_second)
            }
            Pace::TopSpeed { .. } => 0,
        }
    };

    let mut max_wait_ms = 0;
    // (first record, original open, original close, the connection)
    let mut connections: Vec<(usize, u64, Option<u64>, Connection)> =
        Vec::with_capacity(grouped.len());
    for (id, admin, list) in &grouped {
        let mut open = None;
        let mut close = None;
        let mut frames = Vec::new();
        let mut floor = 0;
        for &index in list {
            let record = &records[index];
            match record.kind {
                KIND_OPEN => open = Some(recv(index)),
                KIND_CLOSE => close = Some(recv(index)),
                _ => {
                    let bytes = record.bytes();
                    let expect = match decode_request(bytes) {
                        Ok((frame, _)) => Expect::Reply { request_id: frame.request_id },
                        Err(error) if error.is_frame_local() => {
                            Expect::Reply { request_id: error.request_id().unwrap_or_default() }
                        }
                        Err(error) => Expect::FramingFailure { closes: error.is_fatal() },
                    };
                    if bytes.len() == 64 && bytes[3] == 0x02 {
                        let wait = u32::from_le_bytes([bytes[52], bytes[53], bytes[54], bytes[55]]);
                        max_wait_ms = max_wait_ms.max(wait);
                    }
                    let at_ns = match pace {
                        Pace::Rate { per_second } => at_rate(rank[&index], per_second),
                        _ => event_at(recv(index), false),
                    };
                    // A connection's records are in receive order; keep its times so.
                    floor = floor.max(at_ns);
                    frames.push(Frame {
                        bytes: record.frame,
                        length: bytes.len() as u8,
                        at_ns: floor,
                        expect,
                    });
                }
            }
        }
        let first_time = recv(list[0]);
        let open_ns = event_at(open.unwrap_or(first_time), false)
            .min(frames.first().map_or(u64::MAX, |frame| frame.at_ns));
        let close_ns = close.map(|t| event_at(t, true).max(floor).max(open_ns));
        let connection = Connection {
            captured: *id,
            admin: *admin,
            open_ns,
            close_ns,
            frames,
            after: 0,
            close_rank: 0,
        };
        connections.push((list[0], open.unwrap_or(first_time), close, connection));
    }
    // Start order: by (scaled) open time, then by original open time, then appearance.
    connections.sort_by_key(|(appearance, original_open, _, connection)| {
        (connection.open_ns, *original_open, *appearance)
    });

    // Top speed: a connection waits for every connection that closed before it opened.
    let original_close = |index: usize| connections[index].2.unwrap_or(u64::MAX);
    let mut close_order: Vec<usize> = (0..connections.len()).collect();
    close_order.sort_by_key(|&index| (original_close(index), index));
    let sorted_closes: Vec<u64> = close_order.iter().map(|&index| original_close(index)).collect();
    for (rank, &index) in close_order.iter().enumerate() {
        connections[index].3.close_rank = rank;
    }
    for (_, original_open, _, connection) in &mut connections {
        connection.after = sorted_closes.partition_point(|&close| close < *original_open);
    }

    let frames = frame_times.len() as u64;
    let loop_span_ns = match pace {
        Pace::Original { speed } => ((last - first) as f64 / speed) as u64,
        Pace::Rate { per_second } => at_rate(frame_times.len(), per_second),
        Pace::TopSpeed { .. } => 0,
    };
    Plan {
        connections: connections.into_iter().map(|(_, _, _, connection)| connection).collect(),
        close_order,
        loop_span_ns,
        frames,
        skipped_connections,
        skipped_frames,
        max_wait_ms,
    }
}
