//! Engine snapshots: the whole state written exactly, and read back into an engine that
//! behaves as the original would (same ids, same timer order, same `state_hash`).
//!
//! Layout (docs/JOURNAL.md, "Engine state"): magic `RUSHENGN`, version, the configuration
//! (every capacity: tables are laid out by them), the placement, the scalars, then one
//! section per table in a fixed order. Every struct is destructured field by field, so a
//! field added to the engine without being added here does not compile.

use super::*;
use crate::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};

/// The first bytes of engine state.
pub const ENGINE_SNAPSHOT_MAGIC: [u8; 8] = *b"RUSHENGN";
/// Bumped whenever the layout below changes.
pub const ENGINE_SNAPSHOT_VERSION: u32 = 1;

/// A slot record: a run of never-used slots, or one slot written in full.
const SLOT_RUN_PRISTINE: u8 = 0;
const SLOT_FULL: u8 = 1;

impl KeyOp {
    fn from_u8(value: u8) -> Option<KeyOp> {
        Some(match value {
            1 => KeyOp::Reserve,
            2 => KeyOp::Confirm,
            3 => KeyOp::Cancel,
            4 => KeyOp::Deposit,
            5 => KeyOp::Withdraw,
            6 => KeyOp::AdjustStock,
            7 => KeyOp::Tombstone,
            _ => return None,
        })
    }
}

fn config_fields(config: &Config) -> [(&'static str, u64); 11] {
    let Config {
        sku_max,
        account_max,
        reservation_max,
        waitlist_max,
        request_key_max,
        request_key_retention_ms,
        limit_entry_max,
        quantity_max,
        hold_ms_default,
        hold_ms_max,
        wait_ms_max,
    } = *config;
    [
        ("sku_max", u64::from(sku_max)),
        ("account_max", u64::from(account_max)),
        ("reservation_max", u64::from(reservation_max)),
        ("waitlist_max", u64::from(waitlist_max)),
        ("request_key_max", u64::from(request_key_max)),
        ("request_key_retention_ms", request_key_retention_ms),
        ("limit_entry_max", u64::from(limit_entry_max)),
        ("quantity_max", u64::from(quantity_max)),
        ("hold_ms_default", u64::from(hold_ms_default)),
        ("hold_ms_max", u64::from(hold_ms_max)),
        ("wait_ms_max", u64::from(wait_ms_max)),
    ]
}

/// A slot never handed out: what `Engine::new_shard` left at `index`.
fn is_pristine(slot: &Slot, index: usize, slot_count: usize) -> bool {
    let next = if index + 1 == slot_count { NIL } else { index as u32 + 1 };
    slot.generation == 0
        && slot.state_flags == 0
        && slot.account == 0
        && slot.key == 0
        && slot.amount == 0
        && slot.deadline_ms == 0
        && slot.sku_index == 0
        && slot.quantity == 0
        && slot.hold_ms == 0
        && slot.wait_prev == NIL
        && slot.wait_next == next
}

fn encode_sku(out: &mut SnapshotWriter, sku: &Sku) {
    let Sku {
        id,
        price,
        per_user_limit,
        hold_ms,
        start_ms,
        end_ms,
        total,
        available,
        reserved,
        sold,
        waiters,
        waitlist_head,
        waitlist_tail,
        paused,
        drained,
        dry,
        pool,
        global_total,
        reclaim_pending,
        buckets_may_hold,
        dry_announced,
        no_wait_waiters,
        reduction_pending,
        reduction_key,
        reduction_from,
    } = *sku;
    for word in [id, price, start_ms, end_ms, total, available, reserved, sold, pool, global_total]
    {
        out.u64(word);
    }
    for word in [per_user_limit, hold_ms, waiters, waitlist_head, waitlist_tail, reclaim_pending] {
        out.u32(word);
    }
    for flag in [paused, drained, dry, buckets_may_hold, dry_announced] {
        out.bool(flag);
    }
    out.u32(no_wait_waiters);
    out.u64(reduction_pending);
    out.u64(reduction_key);
    out.u32(reduction_from);
}

fn decode_sku(input: &mut SnapshotReader<'_>) -> Result<Sku, SnapshotError> {
    let mut words = [0_u64; 10];
    for word in &mut words {
        *word = input.u64()?;
    }
    let [id, price, start_ms, end_ms, total, available, reserved, sold, pool, global_total] = words;
    let mut halves = [0_u32; 6];
    for half in &mut halves {
        *half = input.u32()?;
    }
    let [per_user_limit, hold_ms, waiters, waitlist_head, waitlist_tail, reclaim_pending] = halves;
    let mut flags = [false; 5];
    for flag in &mut flags {
        *flag = input.bool()?;
    }
    let [paused, drained, dry, buckets_may_hold, dry_announced] = flags;
    Ok(Sku {
        id,
        price,
        per_user_limit,
        hold_ms,
        start_ms,
        end_ms,
        total,
        available,
        reserved,
        sold,
        waiters,
        waitlist_head,
        waitlist_tail,
        paused,
        drained,
        dry,
        pool,
        global_total,
        reclaim_pending,
        buckets_may_hold,
        dry_announced,
        no_wait_waiters: input.u32()?,
        reduction_pending: input.u64()?,
        reduction_key: input.u64()?,
        reduction_from: input.u32()?,
    })
}

fn encode_slot(out: &mut SnapshotWriter, slot: &Slot) {
    let Slot {
        account,
        key,
        amount,
        deadline_ms,
        sku_index,
        quantity,
        state_flags,
        hold_ms,
        generation,
        wait_prev,
        wait_next,
    } = *slot;
    for word in [account, key, amount, deadline_ms] {
        out.u64(word);
    }
    out.u32(sku_index);
    out.u16(quantity);
    out.u16(state_flags);
    for half in [hold_ms, generation, wait_prev, wait_next] {
        out.u32(half);
    }
}

fn decode_slot(input: &mut SnapshotReader<'_>) -> Result<Slot, SnapshotError> {
    let slot = Slot {
        account: input.u64()?,
        key: input.u64()?,
        amount: input.u64()?,
        deadline_ms: input.u64()?,
        sku_index: input.u32()?,
        quantity: input.u16()?,
        state_flags: input.u16()?,
        hold_ms: input.u32()?,
        generation: input.u32()?,
        wait_prev: input.u32()?,
        wait_next: input.u32()?,
    };
    if ReservationState::from_u8((slot.state_flags & 0xF) as u8).is_none() {
        return Err(input.invalid("reservation state out of range"));
    }
    if slot.state_flags & !(0xFF | JUMP_PENDING) != 0 {
        return Err(input.invalid("unknown reservation slot flag bits"));
    }
    Ok(slot)
}

fn encode_wallet(out: &mut SnapshotWriter, wallet: &Wallet) {
    let Wallet { available, held, spent, deposited, withdrawn } = *wallet;
    for word in [available, held, spent, deposited, withdrawn] {
        out.u64(word);
    }
}

fn decode_wallet(input: &mut SnapshotReader<'_>) -> Result<Wallet, SnapshotError> {
    Ok(Wallet {
        available: input.u64()?,
        held: input.u64()?,
        spent: input.u64()?,
        deposited: input.u64()?,
        withdrawn: input.u64()?,
    })
}

fn encode_key_record(out: &mut SnapshotWriter, record: &KeyRecord) {
    let KeyRecord { fingerprint, reservation, op, result } = *record;
    out.u64(fingerprint);
    out.u64(reservation);
    out.u8(op as u8);
    out.u16(result);
}

fn decode_key_record(input: &mut SnapshotReader<'_>) -> Result<KeyRecord, SnapshotError> {
    let fingerprint = input.u64()?;
    let reservation = input.u64()?;
    let op = KeyOp::from_u8(input.u8()?).ok_or_else(|| input.invalid("unknown key operation"))?;
    let result = input.u16()?;
    if ResultCode::from_u16(result).is_none() {
        return Err(input.invalid("key record result code out of range"));
    }
    Ok(KeyRecord { fingerprint, reservation, op, result })
}

fn encode_counters(out: &mut SnapshotWriter, counters: &Counters) {
    let Counters {
        results,
        holds_expired,
        waiters_matched,
        waiters_timed_out,
        acquires_sent,
        reclaim_rounds,
        keys_evicted,
        reservations_retired,
    } = *counters;
    out.count(results.len());
    for count in results {
        out.u64(count);
    }
    for word in [
        holds_expired,
        waiters_matched,
        waiters_timed_out,
        acquires_sent,
        reclaim_rounds,
        keys_evicted,
        reservations_retired,
    ] {
        out.u64(word);
    }
}

fn decode_counters(input: &mut SnapshotReader<'_>) -> Result<Counters, SnapshotError> {
    let mut counters = Counters::default();
    let results_len = counters.results.len();
    if input.count(results_len, "more result codes than this build knows")? != results_len {
        return Err(input.invalid("result code count differs from this build's"));
    }
    for count in &mut counters.results {
        *count = input.u64()?;
    }
    counters.holds_expired = input.u64()?;
    counters.waiters_matched = input.u64()?;
    counters.waiters_timed_out = input.u64()?;
    counters.acquires_sent = input.u64()?;
    counters.reclaim_rounds = input.u64()?;
    counters.keys_evicted = input.u64()?;
    counters.reservations_retired = input.u64()?;
    Ok(counters)
}

impl Engine {
    /// Appends the whole state to `out` (see the module documentation). Called between
    /// inputs: every message and event of the last call must have been drained.
    pub fn encode_snapshot(&self, out: &mut SnapshotWriter) {
        let Engine {
            config,
            now_ms,
            sku_index,
            skus,
            wallets,
            slots,
            wheel,
            free_head,
            live_count,
            keys,
            key_fifo,
            limits,
            events,
            counters,
            // A measurement of this process's expiries, not state: a restored engine starts
            // with none.
            expiry_delay: _,
            placement,
            outbox,
            // Observational (which SKUs the runtime has not yet published): a restored
            // engine marks every SKU changed instead.
            sku_dirty: _,
            generation_jump,
        } = self;
        assert!(events.is_empty(), "a snapshot is taken between inputs, events drained");
        assert!(outbox.is_empty(), "a snapshot is taken between inputs, messages drained");
        out.raw(&ENGINE_SNAPSHOT_MAGIC);
        out.u32(ENGINE_SNAPSHOT_VERSION);
        for (_, value) in config_fields(config) {
            out.u64(value);
        }
        out.u32(placement.shard);
        out.u32(placement.shard_count);
        out.u64(*now_ms);
        out.u32(*generation_jump);
        out.u32(*free_head);
        out.u32(*live_count);
        encode_counters(out, counters);
        out.count(skus.len());
        for sku in skus {
            encode_sku(out, sku);
        }
        sku_index.encode(out, |out, sku, index| {
            out.u64(*sku);
            out.u32(*index);
        });
        wallets.encode(out, |out, account, wallet| {
            out.u64(*account);
            encode_wallet(out, wallet);
        });
        keys.encode(out, |out, (account, key), record| {
            out.u64(*account);
            out.u64(*key);
            encode_key_record(out, record);
        });
        out.count(key_fifo.len());
        for KeyFifoEntry { account, key, recorded_ms } in key_fifo {
            out.u64(*account);
            out.u64(*key);
            out.u64(*recorded_ms);
        }
        limits.encode(out, |out, (account, sku), count| {
            out.u64(*account);
            out.u64(*sku);
            out.u32(*count);
        });
        out.count(slots.len());
        let mut index = 0;
        while index < slots.len() {
            let run = (index..slots.len())
                .take_while(|&at| is_pristine(&slots[at], at, slots.len()))
                .count();
            if run > 0 {
                out.u8(SLOT_RUN_PRISTINE);
                out.count(run);
                index += run;
            } else {
                out.u8(SLOT_FULL);
                encode_slot(out, &slots[index]);
                index += 1;
            }
        }
        wheel.encode(out);
    }

    /// An engine holding exactly the state `bytes` (written by [`Engine::encode_snapshot`])
    /// describes, for `config` and `placement`, which must be those it was taken with.
    /// Every structural rule and invariants 1–5 are checked; nothing in `bytes` can make
    /// this panic.
    pub fn restore_snapshot(
        config: Config,
        placement: Placement,
        bytes: &[u8],
    ) -> Result<Engine, SnapshotError> {
        let mut input = SnapshotReader::new(bytes);
        if input.take(ENGINE_SNAPSHOT_MAGIC.len())? != ENGINE_SNAPSHOT_MAGIC {
            return Err(SnapshotError::Magic);
        }
        let version = input.u32()?;
        if version != ENGINE_SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(version));
        }
        for (field, expected) in config_fields(&config) {
            let snapshot = input.u64()?;
            if snapshot != expected {
                return Err(SnapshotError::Config { field, snapshot, expected });
            }
        }
        let snapshot_placement = (input.u32()?, input.u32()?);
        if snapshot_placement != (placement.shard, placement.shard_count) {
            return Err(SnapshotError::Placement {
                snapshot: snapshot_placement,
                expected: (placement.shard, placement.shard_count),
            });
        }
        let mut engine = Engine::new_shard(config, placement)
            .map_err(|_| input.invalid("configuration or placement the engine refuses"))?;
        engine.now_ms = input.u64()?;
        if engine.now_ms >= NOW_MS_LIMIT {
            return Err(input.invalid("clock reading beyond NOW_MS_LIMIT"));
        }
        engine.generation_jump = input.u32()?;
        engine.free_head = input.u32()?;
        engine.live_count = input.u32()?;
        let reservation_max = config.reservation_max;
        if engine.free_head != NIL && engine.free_head >= reservation_max {
            return Err(input.invalid("free list head out of range"));
        }
        if engine.live_count > reservation_max {
            return Err(input.invalid("more live reservations than slots"));
        }
        engine.counters = decode_counters(&mut input)?;
        let sku_count = input.count(config.sku_max as usize, "more SKUs than sku_max")?;
        for _ in 0..sku_count {
            let sku = decode_sku(&mut input)?;
            let links_valid = [sku.waitlist_head, sku.waitlist_tail]
                .iter()
                .all(|&link| link == NIL || link < reservation_max);
            if !links_valid {
                return Err(input.invalid("waitlist link out of range"));
            }
            engine.skus.push(sku);
        }
        engine.sku_index.decode_into(&mut input, |input| {
            let sku = input.u64()?;
            let index = input.u32()?;
            if index as usize >= sku_count {
                return Err(input.invalid("SKU index out of range"));
            }
            Ok((sku, index))
        })?;
        if engine.sku_index.len() != sku_count {
            return Err(input.invalid("SKU index and SKU table differ in size"));
        }
        for (sku, index) in engine.sku_index.iter() {
            if engine.skus[*index as usize].id != sku {
                return Err(input.invalid("SKU index points at another SKU"));
            }
        }
        engine
            .wallets
            .decode_into(&mut input, |input| Ok((input.u64()?, decode_wallet(input)?)))?;
        engine.keys.decode_into(&mut input, |input| {
            let key = (input.u64()?, input.u64()?);
            Ok((key, decode_key_record(input)?))
        })?;
        let fifo_len =
            input.count(config.request_key_max as usize, "key FIFO longer than request_key_max")?;
        for _ in 0..fifo_len {
            let entry = KeyFifoEntry {
                account: input.u64()?,
                key: input.u64()?,
                recorded_ms: input.u64()?,
            };
            engine.key_fifo.push_back(entry);
        }
        engine.limits.decode_into(&mut input, |input| {
            let key = (input.u64()?, input.u64()?);
            Ok((key, input.u32()?))
        })?;
        let slot_count = input.count(usize::MAX, "slot count")?;
        if slot_count != reservation_max as usize {
            return Err(input.invalid("slot count differs from reservation_max"));
        }
        let mut index = 0;
        while index < slot_count {
            match input.u8()? {
                SLOT_RUN_PRISTINE => {
                    let run = input.count(slot_count - index, "slot run past the end")?;
                    if run == 0 {
                        return Err(input.invalid("empty run of never-used slots"));
                    }
                    // `new_shard` left these slots pristine already.
                    index += run;
                }
                SLOT_FULL => {
                    let slot = decode_slot(&mut input)?;
                    let links_valid = [slot.wait_prev, slot.wait_next]
                        .iter()
                        .all(|&link| link == NIL || link < reservation_max);
                    if !links_valid {
                        return Err(input.invalid("slot link out of range"));
                    }
                    if slot.state() != ReservationState::None
                        && slot.sku_index as usize >= sku_count
                    {
                        return Err(input.invalid("reservation of an unknown SKU index"));
                    }
                    engine.slots[index] = slot;
                    index += 1;
                }
                _ => return Err(input.invalid("unknown slot record")),
            }
        }
        engine.wheel.decode_into(&mut input)?;
        input.finish()?;
        // The runtime republishes every SKU's levels from the restored state.
        for index in 0..sku_count as u32 {
            engine.sku_dirty.mark(index);
        }
        engine.check_invariants().map_err(SnapshotError::Invariant)?;
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_engine() -> Engine {
        let config = Config::small();
        let mut engine = Engine::new(config).unwrap();
        let now = 1_000;
        engine.execute(
            now,
            &Request::PutSku(SkuSpec {
                sku: 7,
                stock_total: 20,
                price: 5,
                per_user_limit: 3,
                hold_ms: 1_000,
                start_ms: 0,
                end_ms: 0,
            }),
        );
        engine.execute(now, &Request::Deposit { account: 1, amount: 100, key: 2 });
        for account in 1..=4_u64 {
            let reserve = Reserve {
                account,
                sku: 7,
                quantity: 2,
                key: 10 + account,
                flags: if account == 1 { RESERVE_FLAG_PAY } else { 0 },
                hold_ms: 0,
                wait_ms: 0,
            };
            engine.execute(now + account, &Request::Reserve(reserve));
        }
        engine.tick(now + 500);
        engine.drain_events().for_each(drop);
        engine.drain_messages().for_each(drop);
        assert_eq!(engine.live_reservations(), 4, "four holds to carry over");
        engine
    }

    #[test]
    fn a_restored_engine_has_the_same_state_and_behaves_the_same() {
        let mut live = busy_engine();
        let mut out = SnapshotWriter::default();
        live.encode_snapshot(&mut out);
        let mut restored =
            Engine::restore_snapshot(*live.config(), live.placement(), &out.bytes).unwrap();
        assert_eq!(restored.state_hash(), live.state_hash());
        // The same next inputs give the same replies (ids included) and the same states.
        for step in 0..6_u64 {
            let reserve = Reserve {
                account: 20 + step,
                sku: 7,
                quantity: 1,
                key: 1,
                flags: 0,
                hold_ms: 0,
                wait_ms: 0,
            };
            let now = 1_600 + step * 300;
            let a = live.execute(now, &Request::Reserve(reserve));
            let b = restored.execute(now, &Request::Reserve(reserve));
            assert_eq!(a, b);
            assert_eq!(live.state_hash(), restored.state_hash());
        }
        // Encoding the restored engine gives the same bytes.
        let mut again = SnapshotWriter::default();
        let mut original = SnapshotWriter::default();
        live.drain_events().for_each(drop);
        restored.drain_events().for_each(drop);
        live.encode_snapshot(&mut original);
        restored.encode_snapshot(&mut again);
        assert_eq!(original.bytes, again.bytes);
    }

    #[test]
    fn every_truncation_and_many_corruptions_are_errors_not_panics() {
        let live = busy_engine();
        let mut out = SnapshotWriter::default();
        live.encode_snapshot(&mut out);
        let bytes = out.bytes;
        for length in (0..bytes.len()).step_by(7) {
            let result =
                Engine::restore_snapshot(*live.config(), live.placement(), &bytes[..length]);
            assert!(result.is_err(), "a snapshot cut at {length} bytes was accepted");
        }
        let mut seed = 0x5eed_u64;
        let mut accepted = 0;
        for _ in 0..2_000 {
            seed = crate::hash::mix64(seed);
            let mut corrupt = bytes.clone();
            let at = (seed % bytes.len() as u64) as usize;
            corrupt[at] ^= 1 << ((seed >> 32) % 8);
            // Must not panic; some flips land in values no rule constrains (a price).
            if let Ok(engine) = Engine::restore_snapshot(*live.config(), live.placement(), &corrupt)
            {
                accepted += 1;
                assert!(engine.check_invariants().is_ok());
            }
        }
        assert!(accepted < 2_000, "no corruption was ever noticed");
    }

    #[test]
    fn another_configuration_or_shard_is_refused() {
        let live = busy_engine();
        let mut out = SnapshotWriter::default();
        live.encode_snapshot(&mut out);
        let mut config = *live.config();
        config.sku_max += 1;
        let error = Engine::restore_snapshot(config, live.placement(), &out.bytes).unwrap_err();
        assert!(matches!(error, SnapshotError::Config { field: "sku_max", .. }), "{error}");
        let other = Placement { shard: 1, shard_count: 2 };
        let error = Engine::restore_snapshot(*live.config(), other, &out.bytes).unwrap_err();
        assert!(matches!(error, SnapshotError::Placement { .. }), "{error}");
    }
}
