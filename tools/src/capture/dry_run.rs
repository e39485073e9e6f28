//! `rush replay --dry-run`: what a capture holds, without sending anything.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use rush_net::capture::{Capture, KIND_FRAME};
use rush_net::protocol::Opcode;

/// The counts `rush replay --dry-run` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records in the capture (OPEN, FRAME and CLOSE).
    pub records: u64,
    /// FRAME records.
    pub frames: u64,
    /// Of those, frames shorter than 64 bytes: the bytes that made a connection fail
    /// framing (server captures only).
    pub short_frames: u64,
    /// Distinct connections.
    pub connections: u64,
    /// Of those, connections accepted on the admin listener.
    pub admin_connections: u64,
    /// From the earliest to the latest `recv_ns` (records of different shards are not in
    /// time order, so this is max - min, not last - first).
    pub duration_ns: u64,
    /// Records the server dropped while capturing (the header's count).
    pub dropped: u64,
    /// FRAME records by the opcode byte of their header (frames too short to have one are
    /// not counted here).
    pub opcodes: BTreeMap<u8, u64>,
}

impl Summary {
    /// Counts what `capture` holds.
    pub fn of(capture: &Capture) -> Summary {
        let mut summary = Summary {
            records: capture.records.len() as u64,
            dropped: capture.header.dropped.get(),
            ..Summary::default()
        };
        let mut connections = HashSet::new();
        let mut admin = HashSet::new();
        let (mut first, mut last) = (u64::MAX, 0);
        for record in &capture.records {
            let connection = record.connection.get();
            connections.insert(connection);
            if record.admin == 1 {
                admin.insert(connection);
            }
            first = first.min(record.recv_ns.get());
            last = last.max(record.recv_ns.get());
            if record.kind == KIND_FRAME {
                summary.frames += 1;
                let bytes = record.bytes();
                if bytes.len() < 64 {
                    summary.short_frames += 1;
                }
                if let Some(&opcode) = bytes.get(3) {
                    *summary.opcodes.entry(opcode).or_default() += 1;
                }
            }
        }
        summary.connections = connections.len() as u64;
        summary.admin_connections = admin.len() as u64;
        summary.duration_ns = last.saturating_sub(first);
        summary
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "records: {}", self.records)?;
        if self.short_frames > 0 {
            writeln!(
                formatter,
                "frames: {} ({} shorter than 64 bytes: framing failures)",
                self.frames, self.short_frames
            )?;
        } else {
            writeln!(formatter, "frames: {}", self.frames)?;
        }
        writeln!(
            formatter,
            "connections: {} ({} admin)",
            self.connections, self.admin_connections
        )?;
        writeln!(
            formatter,
            "duration: {}.{:09} s",
            self.duration_ns / 1_000_000_000,
            self.duration_ns % 1_000_000_000
        )?;
        writeln!(formatter, "dropped: {}", self.dropped)?;
        write!(formatter, "frames by opcode:")?;
        if self.opcodes.is_empty() {
            write!(formatter, " none")?;
        }
        for (&opcode, count) in &self.opcodes {
            match Opcode::from_u8(opcode) {
                Some(known) => write!(formatter, "\n  {known} (0x{opcode:02x}): {count}")?,
                None => write!(formatter, "\n  unknown (0x{opcode:02x}): {count}")?,
            }
        }
        Ok(())
    }
}

/// Loads `path` (a Rush capture, or a pcap/pcapng converted for the server port `port`)
/// and counts what it holds.
pub fn dry_run(path: &Path, port: Option<u16>) -> anyhow::Result<Summary> {
    let capture = super::load_any(path, port)?;
    Ok(Summary::of(&capture))
}

#[cfg(test)]
mod tests {
    use rush_net::capture::{Record, KIND_CLOSE, KIND_OPEN};
    use rush_net::protocol::wire::U64Le;

    use super::*;

    #[test]
    fn counts_records_connections_admin_duration_and_opcodes() {
        let mut ping = [0_u8; 64];
        ping[..6].copy_from_slice(&[0x52, 0x53, 1, 0x01, 64, 0]);
        let mut deposit = ping;
        deposit[3] = 0x14;
        let records = [
            Record::new(500, 1, KIND_OPEN, false, 0, &[]),
            Record::new(100, 2 << 48, KIND_OPEN, true, 2, &[]),
            Record::new(600, 1, KIND_FRAME, false, 0, &ping),
            Record::new(700, 1, KIND_FRAME, false, 0, &ping),
            Record::new(300, 2 << 48, KIND_FRAME, true, 2, &deposit),
            Record::new(900, 1, KIND_FRAME, false, 0, &[0x52, 0x53, 1, 0x3f, 0x20]),
            Record::new(950, 1, KIND_CLOSE, false, 0, &[]),
        ];
        let mut capture = super::super::capture_of(1, records.to_vec());
        capture.header.dropped = U64Le::new(3);
        let summary = Summary::of(&capture);
        assert_eq!(summary.records, 7);
        assert_eq!(summary.frames, 4);
        assert_eq!(summary.short_frames, 1);
        assert_eq!(summary.connections, 2);
        assert_eq!(summary.admin_connections, 1);
        assert_eq!(summary.duration_ns, 850);
        assert_eq!(summary.dropped, 3);
        assert_eq!(summary.opcodes, BTreeMap::from([(0x01, 2), (0x14, 1), (0x3f, 1)]));
        let text = summary.to_string();
        assert!(text.contains("connections: 2 (1 admin)"), "{text}");
        assert!(text.contains("duration: 0.000000850 s"), "{text}");
        assert!(text.contains("PING (0x01): 2"), "{text}");
        assert!(text.contains("unknown (0x3f): 1"), "{text}");
    }
}
