package rush

import "fmt"

// Frame constants of protocol version 1 (docs/PROTOCOL.md, sections 1 and 2).
const (
	// Magic is the first two bytes of every frame as a little-endian uint16 (bytes 52 53, "RS").
	Magic uint16 = 0x5352
	// Version is the protocol version this package speaks.
	Version uint8 = 1
	// HeaderSize is the size of the header that starts every frame.
	HeaderSize = 16
	// RequestSize is the size of every request frame of version 1.
	RequestSize = 64
	// ResponseSize is the size of every response frame except QUERY_SKU's.
	ResponseSize = 64
	// SKUResponseSize is the size of the QUERY_SKU response frame.
	SKUResponseSize = 104
	// MaxFrameSize is the largest frame of either direction.
	MaxFrameSize = SKUResponseSize
)

// RESERVE flags (the flags field of Reserve, and Reservation.Flags).
const (
	// FlagPay holds price * quantity from the account's wallet.
	FlagPay uint32 = 1 << 0
	// FlagBuy reserves and confirms in one step: the units are sold at once.
	FlagBuy uint32 = 1 << 1
)

// Opcode is the operation a frame carries. A response carries its request's opcode.
type Opcode uint8

// The opcodes of protocol version 1. Admin opcodes (0x10 and up) are accepted only on the
// server's admin listener; anywhere else they are answered ResultUnauthorized.
const (
	OpPing             Opcode = 0x01 // round trip and shard topology (Ping)
	OpReserve          Opcode = 0x02 // take units (and funds) on hold (Reserve)
	OpConfirm          Opcode = 0x03 // held units become sold (Confirm)
	OpCancel           Opcode = 0x04 // held units and funds go back (Cancel)
	OpQuerySKU         Opcode = 0x05 // read a SKU (QuerySKU)
	OpQueryAccount     Opcode = 0x06 // read a wallet (QueryAccount)
	OpQueryReservation Opcode = 0x07 // read a reservation (QueryReservation)
	OpPutSKU           Opcode = 0x10 // admin: create or update a SKU (PutSKU)
	OpAdjustStock      Opcode = 0x11 // admin: restock or remove units (AdjustStock)
	OpPause            Opcode = 0x12 // admin: stop selling a SKU (Pause)
	OpResume           Opcode = 0x13 // admin: resume selling a SKU (Resume)
	OpDeposit          Opcode = 0x14 // admin: add funds to a wallet (Deposit)
	OpWithdraw         Opcode = 0x15 // admin: take funds out of a wallet (Withdraw)
)

// String returns the opcode's name as PROTOCOL.md spells it (RESERVE, QUERY_SKU, ...).
func (op Opcode) String() string {
	if spec := op.spec(); spec != nil {
		return spec.name
	}
	return fmt.Sprintf("Opcode(%#04x)", uint8(op))
}

// Valid reports whether op is an opcode of this protocol version.
func (op Opcode) Valid() bool { return op.spec() != nil }

// IsAdmin reports whether op is an admin operation, which only the admin listener accepts.
func (op Opcode) IsAdmin() bool {
	spec := op.spec()
	return spec != nil && spec.admin
}

// ResultCode is the outcome of a request (result and original_result, PROTOCOL.md section 7).
// Business refusals such as ResultSoldOut are results, not errors: Do returns them in the
// Reply with a nil error. Reply.Err turns them into a *ResultError when that is convenient.
type ResultCode uint16

// The result codes of protocol version 1. The numbers never change meaning.
const (
	// ResultOK: the operation took effect (for queries and PING: the answer is in the body).
	ResultOK ResultCode = 0
	// ResultDuplicate: a retry of a key whose request already took effect; Reply.Original
	// and the body carry the original outcome. Nothing changed this time.
	ResultDuplicate ResultCode = 1
	// ResultKeyReused: the key was used by this account for a different request.
	ResultKeyReused ResultCode = 2
	// ResultSoldOut: not enough units (and no wait), or ADJUST_STOCK would go below zero.
	ResultSoldOut ResultCode = 3
	// ResultLimitExceeded: the account's units of the SKU would exceed its per-user limit.
	ResultLimitExceeded ResultCode = 4
	// ResultInsufficientFunds: the wallet's available balance is too low.
	ResultInsufficientFunds ResultCode = 5
	// ResultNotStarted: the sale window has not opened.
	ResultNotStarted ResultCode = 6
	// ResultEnded: the sale window has closed.
	ResultEnded ResultCode = 7
	// ResultPaused: the SKU is paused by an admin.
	ResultPaused ResultCode = 8
	// ResultUnknownSKU: no SKU with this id.
	ResultUnknownSKU ResultCode = 9
	// ResultUnknownReservation: no such reservation for this account (or it was retired).
	ResultUnknownReservation ResultCode = 10
	// ResultAlreadyConfirmed: the reservation is already confirmed.
	ResultAlreadyConfirmed ResultCode = 11
	// ResultAlreadyCancelled: the reservation was cancelled, or its RESERVE key was
	// tombstoned by an earlier CANCEL; also the deferred answer of a cancelled waiter.
	ResultAlreadyCancelled ResultCode = 12
	// ResultExpired: the hold expired before it was confirmed.
	ResultExpired ResultCode = 13
	// ResultWaitTimeout: a parked RESERVE was not matched within its wait.
	ResultWaitTimeout ResultCode = 14
	// ResultRateLimited: the server's rate limit refused the request; nothing changed.
	ResultRateLimited ResultCode = 15
	// ResultOverloaded: a bounded table or queue is full; nothing changed; retry later.
	ResultOverloaded ResultCode = 16
	// ResultUnauthorized: an admin operation on a connection not allowed to use them.
	ResultUnauthorized ResultCode = 17
	// ResultBadRequest: a malformed frame or a field out of range; nothing changed.
	ResultBadRequest ResultCode = 18
	// ResultWaiting: CONFIRM of a reservation still in the waitlist; as Original of a
	// DUPLICATE, the original RESERVE is still parked.
	ResultWaiting ResultCode = 19
	// ResultOverflow: checked arithmetic refused the operation (u64 overflow).
	ResultOverflow ResultCode = 20
	// ResultUnavailable: the shard's journal cannot write (disk full, I/O error). A new
	// state-changing request changed nothing; one already applied has an unknown outcome:
	// retry it later with the same key.
	ResultUnavailable ResultCode = 21
)

// resultInfo is the table of result codes: adding a code is adding a row.
var resultInfo = [...]struct {
	name string
	// retryLater marks codes that say "nothing changed, the same request may succeed later"
	// for reasons of load rather than business rules.
	retryLater bool
}{
	ResultOK:                 {name: "OK"},
	ResultDuplicate:          {name: "DUPLICATE"},
	ResultKeyReused:          {name: "KEY_REUSED"},
	ResultSoldOut:            {name: "SOLD_OUT"},
	ResultLimitExceeded:      {name: "LIMIT_EXCEEDED"},
	ResultInsufficientFunds:  {name: "INSUFFICIENT_FUNDS"},
	ResultNotStarted:         {name: "NOT_STARTED"},
	ResultEnded:              {name: "ENDED"},
	ResultPaused:             {name: "PAUSED"},
	ResultUnknownSKU:         {name: "UNKNOWN_SKU"},
	ResultUnknownReservation: {name: "UNKNOWN_RESERVATION"},
	ResultAlreadyConfirmed:   {name: "ALREADY_CONFIRMED"},
	ResultAlreadyCancelled:   {name: "ALREADY_CANCELLED"},
	ResultExpired:            {name: "EXPIRED"},
	ResultWaitTimeout:        {name: "WAIT_TIMEOUT"},
	ResultRateLimited:        {name: "RATE_LIMITED", retryLater: true},
	ResultOverloaded:         {name: "OVERLOADED", retryLater: true},
	ResultUnauthorized:       {name: "UNAUTHORIZED"},
	ResultBadRequest:         {name: "BAD_REQUEST"},
	ResultWaiting:            {name: "WAITING"},
	ResultOverflow:           {name: "OVERFLOW"},
	ResultUnavailable:        {name: "UNAVAILABLE", retryLater: true},
}

// Valid reports whether c is a result code of this protocol version.
func (c ResultCode) Valid() bool { return int(c) < len(resultInfo) }

// String returns the code's name as PROTOCOL.md spells it (OK, SOLD_OUT, ...).
func (c ResultCode) String() string {
	if c.Valid() {
		return resultInfo[c].name
	}
	return fmt.Sprintf("ResultCode(%d)", uint16(c))
}

// RetryLater reports whether c means "refused for load, nothing changed": OVERLOADED and
// RATE_LIMITED. Retrying the same request (same key) later is then the expected reaction.
func (c ResultCode) RetryLater() bool { return c.Valid() && resultInfo[c].retryLater }

// ReservationState is a reservation's state (PROTOCOL.md section 5.5).
type ReservationState uint8

// The reservation states of protocol version 1.
const (
	StateNone         ReservationState = 0 // no reservation (or a tombstone was recorded)
	StateWaiting      ReservationState = 1 // parked in the SKU's FIFO waitlist
	StateHeld         ReservationState = 2 // units (and funds) held until DeadlineMs
	StateConfirmed    ReservationState = 3 // sold; terminal
	StateCancelled    ReservationState = 4 // given back by CANCEL; terminal
	StateExpired      ReservationState = 5 // given back at DeadlineMs; terminal
	StateWaitTimedOut ReservationState = 6 // the wait ended unmatched; terminal
)

var stateNames = [...]string{
	StateNone:         "NONE",
	StateWaiting:      "WAITING",
	StateHeld:         "HELD",
	StateConfirmed:    "CONFIRMED",
	StateCancelled:    "CANCELLED",
	StateExpired:      "EXPIRED",
	StateWaitTimedOut: "WAIT_TIMED_OUT",
}

// Valid reports whether s is a state of this protocol version.
func (s ReservationState) Valid() bool { return int(s) < len(stateNames) }

// String returns the state's name as PROTOCOL.md spells it (HELD, CONFIRMED, ...).
func (s ReservationState) String() string {
	if s.Valid() {
		return stateNames[s]
	}
	return fmt.Sprintf("ReservationState(%d)", uint8(s))
}

// TargetKind says what Target.Value is (the target_kind byte of CONFIRM, CANCEL and
// QUERY_RESERVATION).
type TargetKind uint8

const (
	// TargetReservation: Value is a reservation id returned by the server.
	TargetReservation TargetKind = 0
	// TargetReserveKey: Value is the request key of the RESERVE that created the
	// reservation (for a client that lost the RESERVE's response).
	TargetReserveKey TargetKind = 1
)

// Target names a reservation, by id or by the key of the RESERVE that created it.
type Target struct {
	Kind  TargetKind
	Value uint64
}

// ByReservation names the reservation with this id.
func ByReservation(id uint64) Target { return Target{Kind: TargetReservation, Value: id} }

// ByReserveKey names the reservation created by the RESERVE with this request key.
func ByReserveKey(key uint64) Target { return Target{Kind: TargetReserveKey, Value: key} }
