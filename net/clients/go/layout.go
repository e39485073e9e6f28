package rush

// The wire layouts as data. Every frame body is described by a table of fields (PROTOCOL.md
// name, frame offset, width, how its value is checked); the encoder and the decoder walk these
// tables, and every byte no field covers is reserved and must be zero. A test holds the tables
// to the ones in docs/PROTOCOL.md.
//
// Extending the protocol is adding rows:
//   - a new opcode (AUTH for admin connections, say) is a request type implementing Request,
//     a request layout, and a row in opTable;
//   - a variable-length frame (RESERVE_ORDER with several SKU lines) is a layout with a
//     repeated group (offset of the count, size of one line, the line's fields); AppendRequest
//     and DecodeResponse take every frame size from the layouts, never from RequestSize or
//     ResponseSize, so only the size computation and the group's loop are new;
//   - a result-specific response body (RATE_LIMITED with a retry-after hint) is a layout in
//     resultLayouts, which the decoder consults before the opcode's own layout.

// fieldKind says how a decoded field's value is validated.
type fieldKind uint8

const (
	kindUint   fieldKind = iota // any value
	kindResult                  // a ResultCode of this version
	kindState                   // a ReservationState of this version
	kindBool                    // 0 or 1 (QUERY_SKU's paused)
	kindTarget                  // a TargetKind: 0 or 1 (requests only; the server checks it)
)

// field is one row of a layout table.
type field struct {
	name  string // as in PROTOCOL.md, without the backticks
	off   int    // frame offset (the header is bytes 0..16)
	width int    // 1, 2, 4 or 8 bytes, little-endian
	kind  fieldKind
	// set stores a decoded response field in a Reply, get reads it for encoding; both nil
	// in request layouts (requests list their values themselves, see Request.wire).
	set func(r *Reply, v uint64)
	get func(r *Reply) uint64
}

// layout is the table of one frame body.
type layout struct {
	// doc is the PROTOCOL.md section that documents the layout ("4.2"), and table is which
	// layout table of that section it is (0 for the first).
	doc    string
	table  int
	size   int // the whole frame, header included
	fields []field
	// reserved lists the byte ranges no field covers (computed by init from fields).
	reserved []span
}

type span struct{ from, to int }

// maxFields bounds the fields of a request layout: Request.wire fills a fixed array, so
// encoding allocates nothing.
const maxFields = 8

// routeKind is how a request picks its shard (PROTOCOL.md section 1.2).
type routeKind uint8

const (
	routeAnywhere    routeKind = iota // PING, QUERY_SKU: any shard answers
	routeHome                         // the account's home shard
	routeCoordinator                  // the SKU's coordinator shard (admin SKU operations)
)

// opSpec is one row of the opcode table.
type opSpec struct {
	name     string
	admin    bool
	route    routeKind
	request  *layout
	response *layout
	// routeField and accountField index the request layout's "account" / "sku" fields
	// (computed by init); -1 when absent.
	routeField   int
	accountField int
}

// Request layouts (PROTOCOL.md section 4). Every request frame of version 1 is 64 bytes.
var (
	pingRequest = &layout{doc: "4.1", size: RequestSize}

	reserveRequest = &layout{doc: "4.2", size: RequestSize, fields: []field{
		{name: "account", off: 16, width: 8},
		{name: "sku", off: 24, width: 8},
		{name: "key", off: 32, width: 8},
		{name: "quantity", off: 40, width: 4},
		{name: "flags", off: 44, width: 4},
		{name: "hold_ms", off: 48, width: 4},
		{name: "wait_ms", off: 52, width: 4},
	}}

	targetRequest = &layout{doc: "4.3", size: RequestSize, fields: []field{
		{name: "account", off: 16, width: 8},
		{name: "target", off: 24, width: 8},
		{name: "key", off: 32, width: 8},
		{name: "target_kind", off: 40, width: 1, kind: kindTarget},
	}}

	skuRequest = &layout{doc: "4.4", size: RequestSize, fields: []field{
		{name: "sku", off: 16, width: 8},
	}}

	accountRequest = &layout{doc: "4.5", size: RequestSize, fields: []field{
		{name: "account", off: 16, width: 8},
	}}

	queryReservationRequest = &layout{doc: "4.6", size: RequestSize, fields: []field{
		{name: "account", off: 16, width: 8},
		{name: "target", off: 24, width: 8},
		{name: "target_kind", off: 32, width: 1, kind: kindTarget},
	}}

	putSKURequest = &layout{doc: "4.7", size: RequestSize, fields: []field{
		{name: "sku", off: 16, width: 8},
		{name: "stock_total", off: 24, width: 8},
		{name: "price", off: 32, width: 8},
		{name: "start_ms", off: 40, width: 8},
		{name: "end_ms", off: 48, width: 8},
		{name: "per_user_limit", off: 56, width: 4},
		{name: "hold_ms", off: 60, width: 4},
	}}

	adjustStockRequest = &layout{doc: "4.8", size: RequestSize, fields: []field{
		{name: "sku", off: 16, width: 8},
		{name: "delta", off: 24, width: 8},
		{name: "key", off: 32, width: 8},
	}}

	fundsRequest = &layout{doc: "4.9", size: RequestSize, fields: []field{
		{name: "account", off: 16, width: 8},
		{name: "amount", off: 24, width: 8},
		{name: "key", off: 32, width: 8},
	}}
)

// Response fields are built from a pointer into Reply, which gives both directions: the
// decoder's set and the encoder's get (AppendResponse, for tests that play the server).
func u64Field(name string, off int, ref func(*Reply) *uint64) field {
	return field{name: name, off: off, width: 8,
		set: func(r *Reply, v uint64) { *ref(r) = v },
		get: func(r *Reply) uint64 { return *ref(r) }}
}

func u32Field(name string, off int, ref func(*Reply) *uint32) field {
	return field{name: name, off: off, width: 4,
		set: func(r *Reply, v uint64) { *ref(r) = uint32(v) },
		get: func(r *Reply) uint64 { return uint64(*ref(r)) }}
}

func u16Field(name string, off int, ref func(*Reply) *uint16) field {
	return field{name: name, off: off, width: 2,
		set: func(r *Reply, v uint64) { *ref(r) = uint16(v) },
		get: func(r *Reply) uint64 { return uint64(*ref(r)) }}
}

func resultField(name string, off int, ref func(*Reply) *ResultCode) field {
	return field{name: name, off: off, width: 2, kind: kindResult,
		set: func(r *Reply, v uint64) { *ref(r) = ResultCode(v) },
		get: func(r *Reply) uint64 { return uint64(*ref(r)) }}
}

// The two fields every response body starts with (PROTOCOL.md section 5).
var responsePrefix = []field{
	resultField("result", 16, func(r *Reply) *ResultCode { return &r.Result }),
	resultField("original_result", 18, func(r *Reply) *ResultCode { return &r.Original }),
}

func withPrefix(fields ...field) []field {
	return append(append([]field(nil), responsePrefix...), fields...)
}

// Response layouts (PROTOCOL.md section 5).
var (
	plainResponse = &layout{doc: "5.1", size: ResponseSize, fields: withPrefix()}

	pingResponse = &layout{doc: "5.1", table: 1, size: ResponseSize, fields: withPrefix(
		u16Field("shard_count", 20, func(r *Reply) *uint16 { return &r.Topology.ShardCount }),
		u16Field("shard", 22, func(r *Reply) *uint16 { return &r.Topology.Shard }),
		u16Field("shard_port_base", 24, func(r *Reply) *uint16 { return &r.Topology.ShardPortBase }),
	)}

	reservationResponse = &layout{doc: "5.2", size: ResponseSize, fields: withPrefix(
		field{name: "state", off: 20, width: 1, kind: kindState,
			set: func(r *Reply, v uint64) { r.Reservation.State = ReservationState(v) },
			get: func(r *Reply) uint64 { return uint64(r.Reservation.State) }},
		u64Field("reservation_id", 24, func(r *Reply) *uint64 { return &r.Reservation.ID }),
		u64Field("sku", 32, func(r *Reply) *uint64 { return &r.Reservation.SKU }),
		u64Field("amount", 40, func(r *Reply) *uint64 { return &r.Reservation.Amount }),
		u64Field("deadline_ms", 48, func(r *Reply) *uint64 { return &r.Reservation.DeadlineMs }),
		u32Field("quantity", 56, func(r *Reply) *uint32 { return &r.Reservation.Quantity }),
		u32Field("reserve_flags", 60, func(r *Reply) *uint32 { return &r.Reservation.Flags }),
	)}

	accountResponse = &layout{doc: "5.3", size: ResponseSize, fields: withPrefix(
		u64Field("available", 24, func(r *Reply) *uint64 { return &r.Wallet.Available }),
		u64Field("held", 32, func(r *Reply) *uint64 { return &r.Wallet.Held }),
		u64Field("spent", 40, func(r *Reply) *uint64 { return &r.Wallet.Spent }),
		u64Field("deposited", 48, func(r *Reply) *uint64 { return &r.Wallet.Deposited }),
		u64Field("withdrawn", 56, func(r *Reply) *uint64 { return &r.Wallet.Withdrawn }),
	)}

	skuResponse = &layout{doc: "5.4", size: SKUResponseSize, fields: withPrefix(
		field{name: "paused", off: 20, width: 1, kind: kindBool,
			set: func(r *Reply, v uint64) { r.SKU.Paused = v == 1 },
			get: func(r *Reply) uint64 {
				if r.SKU.Paused {
					return 1
				}
				return 0
			}},
		u64Field("sku", 24, func(r *Reply) *uint64 { return &r.SKU.SKU }),
		u64Field("total", 32, func(r *Reply) *uint64 { return &r.SKU.Total }),
		u64Field("available", 40, func(r *Reply) *uint64 { return &r.SKU.Available }),
		u64Field("reserved_units", 48, func(r *Reply) *uint64 { return &r.SKU.Reserved }),
		u64Field("sold", 56, func(r *Reply) *uint64 { return &r.SKU.Sold }),
		u64Field("price", 64, func(r *Reply) *uint64 { return &r.SKU.Price }),
		u64Field("start_ms", 72, func(r *Reply) *uint64 { return &r.SKU.StartMs }),
		u64Field("end_ms", 80, func(r *Reply) *uint64 { return &r.SKU.EndMs }),
		u32Field("per_user_limit", 88, func(r *Reply) *uint32 { return &r.SKU.PerUserLimit }),
		u32Field("hold_ms", 92, func(r *Reply) *uint32 { return &r.SKU.HoldMs }),
		u32Field("waiters", 96, func(r *Reply) *uint32 { return &r.SKU.Waiters }),
	)}
)

// opTable is the opcode table of PROTOCOL.md section 3, indexed by opcode.
var opTable = [...]*opSpec{
	OpPing:             {name: "PING", route: routeAnywhere, request: pingRequest, response: pingResponse},
	OpReserve:          {name: "RESERVE", route: routeHome, request: reserveRequest, response: reservationResponse},
	OpConfirm:          {name: "CONFIRM", route: routeHome, request: targetRequest, response: reservationResponse},
	OpCancel:           {name: "CANCEL", route: routeHome, request: targetRequest, response: reservationResponse},
	OpQuerySKU:         {name: "QUERY_SKU", route: routeAnywhere, request: skuRequest, response: skuResponse},
	OpQueryAccount:     {name: "QUERY_ACCOUNT", route: routeHome, request: accountRequest, response: accountResponse},
	OpQueryReservation: {name: "QUERY_RESERVATION", route: routeHome, request: queryReservationRequest, response: reservationResponse},
	OpPutSKU:           {name: "PUT_SKU", admin: true, route: routeCoordinator, request: putSKURequest, response: plainResponse},
	OpAdjustStock:      {name: "ADJUST_STOCK", admin: true, route: routeCoordinator, request: adjustStockRequest, response: plainResponse},
	OpPause:            {name: "PAUSE", admin: true, route: routeCoordinator, request: skuRequest, response: plainResponse},
	OpResume:           {name: "RESUME", admin: true, route: routeCoordinator, request: skuRequest, response: plainResponse},
	OpDeposit:          {name: "DEPOSIT", admin: true, route: routeHome, request: fundsRequest, response: accountResponse},
	OpWithdraw:         {name: "WITHDRAW", admin: true, route: routeHome, request: fundsRequest, response: accountResponse},
}

// resultLayouts holds response bodies that depend on the result code rather than the opcode
// (none in version 1; RATE_LIMITED's retry-after hint will be one). Indexed by ResultCode.
var resultLayouts [len(resultInfo)]*layout

func (op Opcode) spec() *opSpec {
	if int(op) < len(opTable) {
		return opTable[op]
	}
	return nil
}

func init() {
	seen := map[*layout]bool{}
	for _, spec := range opTable {
		if spec == nil {
			continue
		}
		spec.routeField, spec.accountField = -1, -1
		for i, f := range spec.request.fields {
			switch {
			case f.name == "account" && spec.route == routeHome:
				spec.routeField, spec.accountField = i, i
			case f.name == "sku" && spec.route == routeCoordinator:
				spec.routeField = i
			}
		}
		for _, l := range []*layout{spec.request, spec.response} {
			if !seen[l] {
				seen[l] = true
				l.reserved = reservedSpans(l)
			}
		}
	}
	for _, l := range resultLayouts {
		if l != nil && !seen[l] {
			seen[l] = true
			l.reserved = reservedSpans(l)
		}
	}
}

// reservedSpans returns the body byte ranges of l that no field covers. (The tables' own
// consistency, no overlap and everything inside the frame, is checked by a test.)
func reservedSpans(l *layout) []span {
	covered := make([]bool, l.size)
	for _, f := range l.fields {
		for i := f.off; i < f.off+f.width && i < l.size; i++ {
			covered[i] = true
		}
	}
	var spans []span
	for i := HeaderSize; i < l.size; i++ {
		if covered[i] {
			continue
		}
		if n := len(spans); n > 0 && spans[n-1].to == i {
			spans[n-1].to = i + 1
		} else {
			spans = append(spans, span{from: i, to: i + 1})
		}
	}
	return spans
}
