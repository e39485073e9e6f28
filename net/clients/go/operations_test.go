package rush

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// clientKinds are the three clients; the operation tests run through each.
var clientKinds = []struct {
	name string
	// dial returns a connection for public operations and one for admin operations (the
	// same object when it routes both).
	dial func(ctx context.Context, s *server) (public, admin Doer, err error)
}{
	{"Client", func(ctx context.Context, s *server) (Doer, Doer, error) {
		public, err := Dial(ctx, s.public, nil)
		if err != nil {
			return nil, nil, err
		}
		admin, err := Dial(ctx, s.admin, nil)
		return public, admin, err
	}},
	{"Pipeline", func(ctx context.Context, s *server) (Doer, Doer, error) {
		public, err := DialPipeline(ctx, s.public, nil)
		if err != nil {
			return nil, nil, err
		}
		admin, err := DialPipeline(ctx, s.admin, nil)
		return public, admin, err
	}},
	{"ShardAware", func(ctx context.Context, s *server) (Doer, Doer, error) {
		both, err := DialShardAware(ctx, s.public, &Config{AdminAddr: s.admin})
		return both, both, err
	}},
}

// Every operation of PROTOCOL.md, and every result code the server can be made to give
// (all but RATE_LIMITED, which the server does not implement yet, and OVERLOADED), through
// each client, on both backends, with one and two shards.
func TestEveryOperation(t *testing.T) {
	forEachServer(t, []int{1, 2}, func(t *testing.T, s *server) {
		for _, kind := range clientKinds {
			kind := kind
			t.Run(kind.name, func(t *testing.T) {
				ctx := testContext(t)
				public, admin, err := kind.dial(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				defer public.Close()
				defer admin.Close()
				// A second connection, for the RESERVE that waits in a waitlist while the
				// first one goes on.
				public2, _, err := kind.dial(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				defer public2.Close()
				everyOperation(t, s, public, public2, admin)
			})
		}
	})
}

func everyOperation(t *testing.T, s *server, public, public2, admin Doer) {
	ctx := testContext(t)
	base := uniq(100)
	skuA, skuB, skuC, skuD, skuE, skuNone := base, base+1, base+2, base+3, base+4, base+5
	buyer, buyer2, poor, rich, late := base+10, base+11, base+12, base+13, base+14
	w1, w2, w3, w4 := base+20, base+21, base+22, base+23
	do := func(what string, d Doer, req Request, want ResultCode) Reply {
		t.Helper()
		reply, err := d.Do(ctx, req)
		reply = expect(t, what, reply, err, want)
		if reply.Opcode != req.Opcode() {
			t.Fatalf("%s: reply opcode %v", what, reply.Opcode)
		}
		return reply
	}

	// PING: the topology.
	topology, err := public.Ping(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(topology.ShardCount) != s.shards || int(topology.Shard) >= s.shards ||
		int(topology.ShardPortBase) != s.shardPorts[0] {
		t.Fatalf("topology %+v, server has %d shards from port %d", topology, s.shards, s.shardPorts[0])
	}

	// Admin operations are refused on the public listener, and change nothing.
	plain, err := Dial(ctx, s.public, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	do("PUT_SKU on the public port", plain, PutSKU{SKU: skuA, StockTotal: 10, Price: 500, PerUserLimit: 2}, ResultUnauthorized)
	do("DEPOSIT on the public port", plain, Deposit{Account: buyer, Amount: 1, Key: 1}, ResultUnauthorized)
	do("QUERY_SKU of the refused SKU", plain, QuerySKU{SKU: skuA}, ResultUnknownSKU)

	// PUT_SKU.
	defineSKU(t, s, admin, PutSKU{SKU: skuA, StockTotal: 10, Price: 500, PerUserLimit: 2})
	defineSKU(t, s, admin, PutSKU{SKU: skuB, StockTotal: 5})
	defineSKU(t, s, admin, PutSKU{SKU: skuC, StockTotal: 1})
	do("PUT_SKU with end <= start", admin, PutSKU{SKU: skuNone, StockTotal: 1, StartMs: 10, EndMs: 5}, ResultBadRequest)
	do("PUT_SKU changing the per-user limit", admin, PutSKU{SKU: skuA, StockTotal: 10, Price: 500, PerUserLimit: 3}, ResultBadRequest)

	// DEPOSIT, its retry, a reused key, an overflow.
	deposited := do("DEPOSIT", admin, Deposit{Account: buyer, Amount: 10_000, Key: 1}, ResultOK)
	if deposited.Wallet != (Wallet{Account: buyer, Available: 10_000, Deposited: 10_000}) {
		t.Fatalf("DEPOSIT wallet %+v", deposited.Wallet)
	}
	retry := do("DEPOSIT retried", admin, Deposit{Account: buyer, Amount: 10_000, Key: 1}, ResultDuplicate)
	if retry.Original != ResultOK || retry.Wallet.Available != 10_000 || retry.Err() != nil {
		t.Fatalf("DEPOSIT retry %+v", retry)
	}
	reused := do("DEPOSIT with a reused key", admin, Deposit{Account: buyer, Amount: 9_999, Key: 1}, ResultKeyReused)
	if code, ok := ResultOf(reused.Err()); !ok || code != ResultKeyReused {
		t.Fatalf("Reply.Err of KEY_REUSED: %v", reused.Err())
	}
	do("DEPOSIT of the maximum", admin, Deposit{Account: rich, Amount: math.MaxUint64, Key: 1}, ResultOK)
	do("DEPOSIT past the maximum", admin, Deposit{Account: rich, Amount: 1, Key: 2}, ResultOverflow)

	// RESERVE with PAY, its retry, CONFIRM by id.
	now := uint64(time.Now().UnixMilli())
	held := do("RESERVE", public, Reserve{Account: buyer, SKU: skuA, Key: 10, Quantity: 1, Flags: FlagPay}, ResultOK)
	r := held.Reservation
	if r.ID == 0 || r.Account != buyer || r.SKU != skuA || r.Amount != 500 || r.Quantity != 1 ||
		r.Flags != FlagPay || r.State != StateHeld || r.DeadlineMs < now || r.DeadlineMs > now+3600_000 {
		t.Fatalf("RESERVE reservation %+v", r)
	}
	again := do("RESERVE retried", public, Reserve{Account: buyer, SKU: skuA, Key: 10, Quantity: 1, Flags: FlagPay}, ResultDuplicate)
	if again.Original != ResultOK || again.Reservation.ID != r.ID {
		t.Fatalf("RESERVE retry %+v", again)
	}
	do("RESERVE key reused", public, Reserve{Account: buyer, SKU: skuA, Key: 10, Quantity: 2, Flags: FlagPay}, ResultKeyReused)
	confirmed := do("CONFIRM", public, Confirm{Account: buyer, Target: ByReservation(r.ID), Key: 11}, ResultOK)
	if confirmed.Reservation.State != StateConfirmed || confirmed.Reservation.ID != r.ID {
		t.Fatalf("CONFIRM %+v", confirmed.Reservation)
	}
	do("CONFIRM with a new key", public, Confirm{Account: buyer, Target: ByReservation(r.ID), Key: 12}, ResultAlreadyConfirmed)

	// RESERVE, the per-user limit, CANCEL by the RESERVE's key.
	do("RESERVE a second unit", public, Reserve{Account: buyer, SKU: skuA, Key: 20, Quantity: 1, Flags: FlagPay}, ResultOK)
	do("RESERVE past the limit", public, Reserve{Account: buyer, SKU: skuA, Key: 21, Quantity: 1}, ResultLimitExceeded)
	cancelled := do("CANCEL by key", public, Cancel{Account: buyer, Target: ByReserveKey(20), Key: 22}, ResultOK)
	if cancelled.Reservation.State != StateCancelled {
		t.Fatalf("CANCEL %+v", cancelled.Reservation)
	}
	do("CANCEL again", public, Cancel{Account: buyer, Target: ByReserveKey(20), Key: 23}, ResultAlreadyCancelled)

	// Queries.
	for _, target := range []Target{ByReserveKey(10), ByReservation(r.ID)} {
		q := do("QUERY_RESERVATION", public, QueryReservation{Account: buyer, Target: target}, ResultOK)
		if q.Reservation.ID != r.ID || q.Reservation.State != StateConfirmed || q.Reservation.Account != buyer {
			t.Fatalf("QUERY_RESERVATION %+v", q.Reservation)
		}
	}
	do("QUERY_RESERVATION unknown", public, QueryReservation{Account: buyer, Target: ByReserveKey(999)}, ResultUnknownReservation)
	wallet := do("QUERY_ACCOUNT", public, QueryAccount{Account: buyer}, ResultOK).Wallet
	if wallet != (Wallet{Account: buyer, Available: 9_500, Spent: 500, Deposited: 10_000}) {
		t.Fatalf("QUERY_ACCOUNT %+v", wallet)
	}
	if empty := do("QUERY_ACCOUNT without a wallet", public, QueryAccount{Account: poor}, ResultOK); empty.Wallet != (Wallet{}) {
		t.Fatalf("an account without a wallet reads as zero: %+v", empty.Wallet)
	}
	// QUERY_SKU (the 104-byte response), as every shard sees it.
	waitAllShards(t, s, skuA, func(q Reply) bool {
		return q.SKU == SKUInfo{SKU: skuA, Total: 10, Available: 9, Sold: 1, Price: 500, PerUserLimit: 2, HoldMs: q.SKU.HoldMs}
	})
	viaClient := do("QUERY_SKU", public, QuerySKU{SKU: skuA}, ResultOK)
	if viaClient.SKU.Total != 10 || viaClient.SKU.Price != 500 {
		t.Fatalf("QUERY_SKU %+v", viaClient.SKU)
	}

	// PAY without funds; BUY.
	do("RESERVE without funds", public, Reserve{Account: poor, SKU: skuA, Key: 1, Quantity: 1, Flags: FlagPay}, ResultInsufficientFunds)
	bought := do("RESERVE with BUY", public, Reserve{Account: buyer2, SKU: skuB, Key: 1, Quantity: 2, Flags: FlagBuy}, ResultOK)
	if bought.Reservation.State != StateConfirmed || bought.Reservation.Quantity != 2 {
		t.Fatalf("BUY %+v", bought.Reservation)
	}

	// PAUSE and RESUME.
	do("PAUSE", admin, Pause{SKU: skuB}, ResultOK)
	waitAllShards(t, s, skuB, func(q Reply) bool { return q.SKU.Paused })
	do("RESERVE while paused", public, Reserve{Account: buyer2, SKU: skuB, Key: 2, Quantity: 1}, ResultPaused)
	do("RESUME", admin, Resume{SKU: skuB}, ResultOK)
	waitAllShards(t, s, skuB, func(q Reply) bool { return !q.SKU.Paused })
	do("RESERVE after RESUME", public, Reserve{Account: buyer2, SKU: skuB, Key: 2, Quantity: 1}, ResultOK)
	do("PAUSE of an unknown SKU", admin, Pause{SKU: skuNone}, ResultUnknownSKU)

	// ADJUST_STOCK: 5 - 2 sold - 1 held + 3 = 5 available.
	adjust := uniq(1)
	do("ADJUST_STOCK", admin, AdjustStock{SKU: skuB, Delta: 3, Key: adjust}, ResultOK)
	dup := do("ADJUST_STOCK retried", admin, AdjustStock{SKU: skuB, Delta: 3, Key: adjust}, ResultDuplicate)
	if dup.Original != ResultOK {
		t.Fatalf("ADJUST_STOCK retry %+v", dup)
	}
	do("ADJUST_STOCK by 0", admin, AdjustStock{SKU: skuB, Delta: 0, Key: uniq(1)}, ResultBadRequest)
	do("ADJUST_STOCK below 0", admin, AdjustStock{SKU: skuB, Delta: -1000, Key: uniq(1)}, ResultSoldOut)
	do("ADJUST_STOCK of an unknown SKU", admin, AdjustStock{SKU: skuNone, Delta: 1, Key: uniq(1)}, ResultUnknownSKU)
	waitAllShards(t, s, skuB, func(q Reply) bool { return q.SKU.Available == 5 && q.SKU.Sold == 2 && q.SKU.Reserved == 1 })

	// WITHDRAW.
	withdrawn := do("WITHDRAW", admin, Withdraw{Account: buyer, Amount: 100, Key: 2}, ResultOK)
	if withdrawn.Wallet.Available != 9_400 || withdrawn.Wallet.Withdrawn != 100 || withdrawn.Wallet.Account != buyer {
		t.Fatalf("WITHDRAW %+v", withdrawn.Wallet)
	}
	do("WITHDRAW too much", admin, Withdraw{Account: buyer, Amount: 1_000_000, Key: 3}, ResultInsufficientFunds)

	// BAD_REQUEST: the engine's checks, and the server decoder's frame-local ones (an
	// unknown flag bit, an unknown target kind: the client sends fields as given).
	do("RESERVE for account 0", public, Reserve{Account: 0, SKU: skuA, Key: 1, Quantity: 1}, ResultBadRequest)
	do("RESERVE of 0 units", public, Reserve{Account: buyer2, SKU: skuA, Key: 3, Quantity: 0}, ResultBadRequest)
	do("RESERVE with flag bit 2", public, Reserve{Account: buyer2, SKU: skuA, Key: 3, Quantity: 1, Flags: 4}, ResultBadRequest)
	do("CONFIRM with target kind 2", public, Confirm{Account: buyer2, Target: Target{Kind: 2, Value: 1}, Key: 4}, ResultBadRequest)
	do("RESERVE of an unknown SKU", public, Reserve{Account: buyer2, SKU: skuNone, Key: 3, Quantity: 1}, ResultUnknownSKU)

	// CANCEL before RESERVE: a tombstone, then the late RESERVE holds nothing.
	tomb := do("CANCEL of an unseen RESERVE key", public, Cancel{Account: late, Target: ByReserveKey(50), Key: 51}, ResultOK)
	if tomb.Reservation != (Reservation{}) {
		t.Fatalf("a tombstone answers an all-zero body (state NONE): %+v", tomb.Reservation)
	}
	do("the late RESERVE", public, Reserve{Account: late, SKU: skuA, Key: 50, Quantity: 1}, ResultAlreadyCancelled)

	// The sale window.
	future := uint64(time.Now().Add(time.Hour).UnixMilli())
	defineSKU(t, s, admin, PutSKU{SKU: skuD, StockTotal: 1, StartMs: future})
	do("RESERVE before the sale", public, Reserve{Account: late, SKU: skuD, Key: 60, Quantity: 1}, ResultNotStarted)
	defineSKU(t, s, admin, PutSKU{SKU: skuE, StockTotal: 1, StartMs: 1, EndMs: 2})
	do("RESERVE after the sale", public, Reserve{Account: late, SKU: skuE, Key: 61, Quantity: 1}, ResultEnded)

	// A hold that expires.
	do("RESERVE held 50 ms", public, Reserve{Account: late, SKU: skuB, Key: 70, Quantity: 1, HoldMs: 50}, ResultOK)
	time.Sleep(150 * time.Millisecond)
	do("CONFIRM after the hold", public, Confirm{Account: late, Target: ByReserveKey(70), Key: 71}, ResultExpired)

	// The waitlist: SKU C has one unit; w1 holds it.
	first := do("RESERVE the last unit", public, Reserve{Account: w1, SKU: skuC, Key: 1, Quantity: 1}, ResultOK)
	do("RESERVE without waiting", public, Reserve{Account: w2, SKU: skuC, Key: 9, Quantity: 1}, ResultSoldOut)
	// w2 waits (on the second connection); CONFIRM says WAITING; CANCEL ends the wait, and
	// the parked RESERVE gets its deferred answer, ALREADY_CANCELLED.
	parked := doAsync(ctx, public2, Reserve{Account: w2, SKU: skuC, Key: 1, Quantity: 1, WaitMs: 30_000})
	waitForState(t, public, w2, 1, StateWaiting)
	do("CONFIRM of a waiter", public, Confirm{Account: w2, Target: ByReserveKey(1), Key: 2}, ResultWaiting)
	do("CANCEL of a waiter", public, Cancel{Account: w2, Target: ByReserveKey(1), Key: 3}, ResultOK)
	deferred := <-parked
	expect(t, "the parked RESERVE", deferred.reply, deferred.err, ResultAlreadyCancelled)
	if deferred.reply.Reservation.State != StateCancelled {
		t.Fatalf("cancelled waiter %+v", deferred.reply.Reservation)
	}
	// A wait that times out.
	timedOut := do("RESERVE waiting 100 ms", public, Reserve{Account: w3, SKU: skuC, Key: 1, Quantity: 1, WaitMs: 100}, ResultWaitTimeout)
	if timedOut.Reservation.State != StateWaitTimedOut {
		t.Fatalf("timed-out waiter %+v", timedOut.Reservation)
	}
	// A waiter matched when the unit comes back.
	parked = doAsync(ctx, public2, Reserve{Account: w4, SKU: skuC, Key: 1, Quantity: 1, WaitMs: 30_000})
	waitForState(t, public, w4, 1, StateWaiting)
	do("CANCEL the hold", public, Cancel{Account: w1, Target: ByReservation(first.Reservation.ID), Key: 2}, ResultOK)
	deferred = <-parked
	matched := expect(t, "the matched waiter", deferred.reply, deferred.err, ResultOK)
	if matched.Reservation.State != StateHeld || matched.Reservation.Account != w4 {
		t.Fatalf("matched waiter %+v", matched.Reservation)
	}
}

type result struct {
	reply Reply
	err   error
}

func doAsync(ctx context.Context, d Doer, req Request) <-chan result {
	out := make(chan result, 1)
	go func() {
		reply, err := d.Do(ctx, req)
		out <- result{reply, err}
	}()
	return out
}

// waitForState polls QUERY_RESERVATION by RESERVE key until the reservation is in state.
func waitForState(t *testing.T, d Doer, account, key uint64, state ReservationState) {
	t.Helper()
	ctx := testContext(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := d.Do(ctx, QueryReservation{Account: account, Target: ByReserveKey(key)})
		if err != nil {
			t.Fatal(err)
		}
		if reply.Result == ResultOK && reply.Reservation.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("account %d key %d never reached %v: %+v", account, key, state, reply)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A ShardAware client without Config.AdminAddr refuses admin operations itself, with a typed
// error, instead of sending them where the server would answer UNAUTHORIZED.
func TestShardAwareWithoutAdminAddress(t *testing.T) {
	s := sharedServer(t, "epoll", 2)
	ctx := testContext(t)
	client, err := DialShardAware(ctx, s.public, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Do(ctx, Pause{SKU: 1}); !errors.Is(err, ErrNoAdminAddress) {
		t.Fatalf("want ErrNoAdminAddress, got %v", err)
	}
	if client.Route(Pause{SKU: 1}) != -1 {
		t.Fatalf("admin operations route to the admin connection")
	}
}
