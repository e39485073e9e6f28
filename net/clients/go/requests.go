package rush

// Request is one operation of PROTOCOL.md section 4: Ping, Reserve, Confirm, Cancel,
// QuerySKU, QueryAccount, QueryReservation, and the admin operations PutSKU, AdjustStock,
// Pause, Resume, Deposit and Withdraw. The set is closed (the method wire is unexported) so
// that every Request encodes to a well-formed frame.
//
// Fields are sent as given. The server checks them: a zero id or key, a zero quantity or an
// unknown flag bit is answered ResultBadRequest, not refused by the client.
type Request interface {
	// Opcode is the operation's opcode.
	Opcode() Opcode
	// wire stores the field values in the order of the opcode's request layout.
	wire(values *[maxFields]uint64)
}

// Ping asks for a round trip with no engine work; the reply carries the server's shard
// topology (Reply.Topology).
type Ping struct{}

// Reserve takes Quantity units of SKU on hold for Account (PROTOCOL.md 4.2).
type Reserve struct {
	Account uint64
	SKU     uint64
	// Key is the request key: a retry with the same key is answered ResultDuplicate and
	// changes nothing. Unique per account, never 0.
	Key      uint64
	Quantity uint32
	// Flags is a combination of FlagPay and FlagBuy.
	Flags uint32
	// HoldMs is how long the units are held; 0 = the SKU's default.
	HoldMs uint32
	// WaitMs is how long to wait in the SKU's FIFO waitlist when there is no stock;
	// 0 = answer ResultSoldOut at once. A parked RESERVE is answered only when its wait
	// ends, so Do blocks (or its context expires) until then.
	WaitMs uint32
}

// Confirm turns a held reservation into a sale (PROTOCOL.md 4.3).
type Confirm struct {
	Account uint64
	Target  Target
	// Key is this request's own key (not the RESERVE's).
	Key uint64
}

// Cancel gives a reservation's units and funds back (PROTOCOL.md 4.3). Cancelling by the key
// of a RESERVE the server has not seen records a tombstone: the late RESERVE then gets
// ResultAlreadyCancelled.
type Cancel struct {
	Account uint64
	Target  Target
	// Key is this request's own key (not the RESERVE's).
	Key uint64
}

// QuerySKU reads a SKU (PROTOCOL.md 4.4); the reply's SKU field holds it.
type QuerySKU struct {
	SKU uint64
}

// QueryAccount reads a wallet (PROTOCOL.md 4.5); the reply's Wallet field holds it.
type QueryAccount struct {
	Account uint64
}

// QueryReservation reads a reservation by id or by its RESERVE's key (PROTOCOL.md 4.6).
type QueryReservation struct {
	Account uint64
	Target  Target
}

// PutSKU creates a SKU or updates its mutable attributes (admin, PROTOCOL.md 4.7). It is not
// keyed: it sets values, so a retry is harmless.
type PutSKU struct {
	SKU uint64
	// StockTotal is the units on sale when the SKU is created; ignored afterwards.
	StockTotal uint64
	Price      uint64
	// StartMs and EndMs bound the sale window (unix ms, server clock); 0 = open, never ends.
	StartMs uint64
	EndMs   uint64
	// PerUserLimit is the most units one account may hold and buy; 0 = no limit. Immutable.
	PerUserLimit uint32
	// HoldMs is the default hold of a RESERVE with HoldMs 0; 0 = the engine's default.
	HoldMs uint32
}

// AdjustStock adds (Delta > 0) or removes (Delta < 0) available units (admin, PROTOCOL.md
// 4.8). Its key lives in the admin namespace (account 0).
type AdjustStock struct {
	SKU   uint64
	Delta int64
	Key   uint64
}

// Pause stops selling a SKU (admin, PROTOCOL.md 4.4).
type Pause struct {
	SKU uint64
}

// Resume resumes selling a paused SKU (admin, PROTOCOL.md 4.4).
type Resume struct {
	SKU uint64
}

// Deposit adds funds to a wallet, creating it (admin, PROTOCOL.md 4.9).
type Deposit struct {
	Account uint64
	Amount  uint64
	Key     uint64
}

// Withdraw takes funds out of a wallet's available balance (admin, PROTOCOL.md 4.9).
type Withdraw struct {
	Account uint64
	Amount  uint64
	Key     uint64
}

// Opcode returns OpPing.
func (Ping) Opcode() Opcode { return OpPing }

// Opcode returns OpReserve.
func (Reserve) Opcode() Opcode { return OpReserve }

// Opcode returns OpConfirm.
func (Confirm) Opcode() Opcode { return OpConfirm }

// Opcode returns OpCancel.
func (Cancel) Opcode() Opcode { return OpCancel }

// Opcode returns OpQuerySKU.
func (QuerySKU) Opcode() Opcode { return OpQuerySKU }

// Opcode returns OpQueryAccount.
func (QueryAccount) Opcode() Opcode { return OpQueryAccount }

// Opcode returns OpQueryReservation.
func (QueryReservation) Opcode() Opcode { return OpQueryReservation }

// Opcode returns OpPutSKU.
func (PutSKU) Opcode() Opcode { return OpPutSKU }

// Opcode returns OpAdjustStock.
func (AdjustStock) Opcode() Opcode { return OpAdjustStock }

// Opcode returns OpPause.
func (Pause) Opcode() Opcode { return OpPause }

// Opcode returns OpResume.
func (Resume) Opcode() Opcode { return OpResume }

// Opcode returns OpDeposit.
func (Deposit) Opcode() Opcode { return OpDeposit }

// Opcode returns OpWithdraw.
func (Withdraw) Opcode() Opcode { return OpWithdraw }

// The wire methods list the values in the order of the layout tables of layout.go.

func (Ping) wire(*[maxFields]uint64) {}

func (r Reserve) wire(v *[maxFields]uint64) {
	*v = [maxFields]uint64{r.Account, r.SKU, r.Key, uint64(r.Quantity), uint64(r.Flags),
		uint64(r.HoldMs), uint64(r.WaitMs)}
}

func (r Confirm) wire(v *[maxFields]uint64) {
	*v = [maxFields]uint64{r.Account, r.Target.Value, r.Key, uint64(r.Target.Kind)}
}

func (r Cancel) wire(v *[maxFields]uint64) {
	*v = [maxFields]uint64{r.Account, r.Target.Value, r.Key, uint64(r.Target.Kind)}
}

func (r QuerySKU) wire(v *[maxFields]uint64) { v[0] = r.SKU }

func (r QueryAccount) wire(v *[maxFields]uint64) { v[0] = r.Account }

func (r QueryReservation) wire(v *[maxFields]uint64) {
	*v = [maxFields]uint64{r.Account, r.Target.Value, uint64(r.Target.Kind)}
}

func (r PutSKU) wire(v *[maxFields]uint64) {
	*v = [maxFields]uint64{r.SKU, r.StockTotal, r.Price, r.StartMs, r.EndMs,
		uint64(r.PerUserLimit), uint64(r.HoldMs)}
}

// AdjustStock's delta is an i64 on the wire: two's complement, so the uint64 conversion
// keeps its bits.
func (r AdjustStock) wire(v *[maxFields]uint64) {
	*v = [maxFields]uint64{r.SKU, uint64(r.Delta), r.Key}
}

func (r Pause) wire(v *[maxFields]uint64) { v[0] = r.SKU }

func (r Resume) wire(v *[maxFields]uint64) { v[0] = r.SKU }

func (r Deposit) wire(v *[maxFields]uint64) { *v = [maxFields]uint64{r.Account, r.Amount, r.Key} }

func (r Withdraw) wire(v *[maxFields]uint64) {
	*v = [maxFields]uint64{r.Account, r.Amount, r.Key}
}
