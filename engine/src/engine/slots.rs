//! Reservation slots: allocation, retirement, lookup by id, views.

use super::*;

impl Engine {
    pub(crate) fn slot_room(&self) -> bool {
        self.free_head != NIL || self.wheel.oldest_finished().is_some()
    }

    /// A free slot with a fresh generation, retiring the oldest finished reservation when
    /// no slot is free. The caller checked `slot_room`.
    pub(crate) fn allocate_slot(&mut self, flags: u32) -> u32 {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            self.free_head = self.slots[index as usize].wait_next;
            index
        } else {
            let index = self.wheel.oldest_finished().expect("slot room was checked");
            self.wheel.unlink(index);
            self.counters.reservations_retired += 1;
            index
        };
        let slot = &mut self.slots[index as usize];
        // 2^32 reuses of one slot: decades at full speed (docs/PROTOCOL.md, "Reservation
        // ids"); past it an id could repeat, so the shard stops instead.
        let jump = if slot.jump_pending() { self.generation_jump } else { 0 };
        let generation =
            slot.generation().checked_add(1 + jump).expect("a slot's id space is spent");
        *slot = Slot::default();
        slot.set_generation_and_flags(generation, flags);
        self.live_count += 1;
        index
    }

    /// A live reservation reaches a terminal state and joins the finished FIFO.
    pub(crate) fn finish(&mut self, index: u32, state: ReservationState) {
        assert!(state.is_terminal());
        let slot = &mut self.slots[index as usize];
        assert!(!slot.state().is_terminal());
        slot.set_state(state);
        self.live_count -= 1;
        self.wheel.push_finished(index);
    }

    pub(super) fn resolve(&self, account: AccountId, target: Target) -> Resolved {
        let reservation = match target {
            Target::Reservation(reservation) => reservation,
            Target::ReserveKey(reserve_key) => match self.keys.get(&(account, reserve_key)) {
                None => return Resolved::Unknown,
                Some(record) if record.op == KeyOp::Tombstone => return Resolved::Tombstone,
                Some(record) if record.op == KeyOp::Reserve => record.reservation,
                Some(_) => return Resolved::Unknown,
            },
        };
        match self.slot_of(reservation) {
            Some(index) if self.slots[index as usize].account == account => Resolved::Slot(index),
            _ => Resolved::Unknown,
        }
    }

    /// The slot of a reservation id, if the id is current (not retired, not reused).
    pub(crate) fn slot_of(&self, reservation: ReservationId) -> Option<u32> {
        let ReservationIdParts { generation, shard, slot: index } =
            ReservationIdParts::parse(reservation);
        let slot = self.slots.get(index as usize)?;
        let current = generation != 0
            && shard == self.placement.shard
            && slot.generation() == generation
            && slot.state() != ReservationState::None;
        current.then_some(index)
    }

    pub(crate) fn view(&self, index: u32) -> ReservationView {
        let slot = &self.slots[index as usize];
        ReservationView {
            reservation: self.reservation_id(index),
            account: slot.account,
            sku: self.skus[slot.sku_index as usize].id,
            quantity: u32::from(slot.quantity),
            flags: slot.flags() & RESERVE_FLAGS_KNOWN,
            amount: slot.amount,
            deadline_ms: slot.deadline_ms,
            state: slot.state(),
        }
    }
}
