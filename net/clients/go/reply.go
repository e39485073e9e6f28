package rush

// Reply is a decoded response. Which body field is filled depends on the opcode (PROTOCOL.md
// section 5): Reservation for RESERVE, CONFIRM, CANCEL and QUERY_RESERVATION; Wallet for
// DEPOSIT, WITHDRAW and QUERY_ACCOUNT; SKU for QUERY_SKU; Topology for PING. A rejection
// (SOLD_OUT, BAD_REQUEST, ...) has an all-zero body: a zero Reservation.ID, Wallet or SKU
// means "no body".
type Reply struct {
	// Opcode and RequestID are copied from the request this answers.
	Opcode    Opcode
	RequestID uint64
	// Result is the outcome. Original is, for ResultDuplicate, the outcome of the original
	// request (the one that took effect); otherwise it equals Result.
	Result   ResultCode
	Original ResultCode

	Reservation Reservation
	Wallet      Wallet
	SKU         SKUInfo
	Topology    Topology
}

// Err returns nil when the request's effect is in place: Result is ResultOK, or
// ResultDuplicate of an original ResultOK (a retry of a request that took effect). Otherwise
// it returns a *ResultError carrying both codes.
func (r Reply) Err() error {
	if r.Result == ResultOK || (r.Result == ResultDuplicate && r.Original == ResultOK) {
		return nil
	}
	return &ResultError{Opcode: r.Opcode, RequestID: r.RequestID, Result: r.Result, Original: r.Original}
}

// Reservation is the reservation body (PROTOCOL.md 5.2): the reservation as it is after the
// request (for DUPLICATE, as it is now).
type Reservation struct {
	// ID is the server's handle for Confirm, Cancel and QueryReservation (ByReservation);
	// 0 when the reply carries no reservation.
	ID uint64
	// Account is the account the request named (it is not on the wire; the client fills it
	// in from the request).
	Account uint64
	SKU     uint64
	// Amount is the funds held (FlagPay), then spent or returned; 0 without FlagPay.
	Amount uint64
	// DeadlineMs is the hold's expiry while held or after; the wait deadline while waiting
	// (unix ms, server clock).
	DeadlineMs uint64
	Quantity   uint32
	// Flags are the flags of the RESERVE that created it.
	Flags uint32
	State ReservationState
}

// Wallet is the account body (PROTOCOL.md 5.3). Available + Held + Spent equals
// Deposited - Withdrawn. An account without a wallet reads as all zero.
type Wallet struct {
	// Account is the account the request named (filled in by the client).
	Account   uint64
	Available uint64
	Held      uint64
	Spent     uint64
	Deposited uint64
	Withdrawn uint64
}

// SKUInfo is the QUERY_SKU body (PROTOCOL.md 5.4).
type SKUInfo struct {
	SKU   uint64
	Total uint64
	// Available is the units that can be reserved now, as seen by the shard that answered.
	Available uint64
	// Reserved is the units held by reservations (reserved_units on the wire).
	Reserved     uint64
	Sold         uint64
	Price        uint64
	StartMs      uint64
	EndMs        uint64
	PerUserLimit uint32
	HoldMs       uint32
	// Waiters is the number of RESERVEs parked in the SKU's FIFO waitlist.
	Waiters uint32
	Paused  bool
}

// Topology is the server's shard layout, from a PING response (PROTOCOL.md 5.1).
type Topology struct {
	// ShardCount is the number of shards (0: not reported).
	ShardCount uint16
	// Shard is the shard that served the connection the PING came on.
	Shard uint16
	// ShardPortBase: shard i listens on ShardPortBase + i; 0 when there are no per-shard
	// ports.
	ShardPortBase uint16
}
