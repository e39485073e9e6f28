package rush

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// concurrentKinds are the clients that many goroutines may share.
var concurrentKinds = []struct {
	name string
	dial func(ctx context.Context, s *server, cfg *Config) (Doer, error)
}{
	{"Pipeline", func(ctx context.Context, s *server, cfg *Config) (Doer, error) {
		return DialPipeline(ctx, s.public, cfg)
	}},
	{"ShardAware", func(ctx context.Context, s *server, cfg *Config) (Doer, error) {
		return DialShardAware(ctx, s.public, cfg)
	}},
}

// 10,000 requests from 50 goroutines on one client: every reply is the answer to its own
// request (the SKU and quantity it names come back), and the server's state is exactly the
// sum of what was asked.
func TestTenThousandPipelinedRequestsFrom50Goroutines(t *testing.T) {
	const goroutines, perGoroutine, skus = 50, 200, 10
	forEachServer(t, []int{1, 2}, func(t *testing.T, s *server) {
		for _, kind := range concurrentKinds {
			kind := kind
			t.Run(kind.name, func(t *testing.T) {
				ctx := testContext(t)
				admin, err := Dial(ctx, s.admin, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer admin.Close()
				base := uniq(skus)
				for i := uint64(0); i < skus; i++ {
					defineSKU(t, s, admin, PutSKU{SKU: base + i, StockTotal: 1_000_000})
				}
				client, err := kind.dial(ctx, s, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				accounts := uniq(goroutines * perGoroutine)
				var reserved [skus]uint64
				var mu sync.Mutex
				var counts [3]int64 // PING, RESERVE, QUERY_SKU answered correctly
				var wg sync.WaitGroup
				errs := make(chan error, goroutines)
				for g := 0; g < goroutines; g++ {
					wg.Add(1)
					go func(g int) {
						defer wg.Done()
						var mine [skus]uint64
						for i := 0; i < perGoroutine; i++ {
							index := (g + i) % skus
							sku := base + uint64(index)
							switch i % 4 {
							case 0:
								reply, err := client.Do(ctx, Ping{})
								if err != nil || reply.Result != ResultOK || int(reply.Topology.ShardCount) != s.shards {
									errs <- fmt.Errorf("PING: %v %+v", err, reply)
									return
								}
								atomic.AddInt64(&counts[0], 1)
							case 1, 2:
								account := accounts + uint64(g*perGoroutine+i)
								quantity := uint32(1 + i%3)
								reply, err := client.Do(ctx, Reserve{Account: account, SKU: sku, Key: 1, Quantity: quantity})
								r := reply.Reservation
								if err != nil || reply.Result != ResultOK || r.SKU != sku || r.Quantity != quantity ||
									r.Account != account || reply.Opcode != OpReserve {
									errs <- fmt.Errorf("RESERVE account %d SKU %d x%d: %v %+v", account, sku, quantity, err, reply)
									return
								}
								mine[index] += uint64(quantity)
								atomic.AddInt64(&counts[1], 1)
							case 3:
								reply, err := client.Do(ctx, QuerySKU{SKU: sku})
								if err != nil || reply.Result != ResultOK || reply.SKU.SKU != sku || reply.SKU.Total != 1_000_000 {
									errs <- fmt.Errorf("QUERY_SKU %d: %v %+v", sku, err, reply)
									return
								}
								atomic.AddInt64(&counts[2], 1)
							}
						}
						mu.Lock()
						for i := range mine {
							reserved[i] += mine[i]
						}
						mu.Unlock()
					}(g)
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
				total := goroutines * perGoroutine
				if counts != [3]int64{int64(total / 4), int64(total / 2), int64(total / 4)} {
					t.Fatalf("answers per kind %v, want %d in all", counts, total)
				}
				for i := range reserved {
					sku, want := base+uint64(i), reserved[i]
					waitAllShards(t, s, sku, func(q Reply) bool { return q.SKU.Reserved == want && q.SKU.Available == 1_000_000-want })
				}
			})
		}
	})
}

// MaxInFlight is a hard bound: 50 goroutines on a Pipeline of 8 slots never have more than 8
// requests in flight, and all of them are answered.
func TestPipelineBoundsRequestsInFlight(t *testing.T) {
	forEachServer(t, []int{2}, func(t *testing.T, s *server) {
		ctx := testContext(t)
		p, err := DialPipeline(ctx, s.public, &Config{MaxInFlight: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.MaxInFlight() != 8 {
			t.Fatalf("MaxInFlight %d", p.MaxInFlight())
		}
		stop := make(chan struct{})
		peak := make(chan int)
		go func() {
			max := 0
			for {
				select {
				case <-stop:
					peak <- max
					return
				default:
				}
				if n := p.InFlight(); n > max {
					max = n
				}
			}
		}()
		var wg sync.WaitGroup
		var answered int64
		for g := 0; g < 50; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					if reply, err := p.Do(ctx, Ping{}); err == nil && reply.Result == ResultOK {
						atomic.AddInt64(&answered, 1)
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		max := <-peak
		if answered != 5000 {
			t.Fatalf("%d of 5000 answered", answered)
		}
		if max > 8 || max < 2 {
			t.Fatalf("peak in flight %d: want pipelining (>1) within the bound (<=8)", max)
		}
		if n := p.InFlight(); n != 0 {
			t.Fatalf("%d still in flight", n)
		}
	})
}

// The hot-SKU race: 1,000 buyers on 50 goroutines race for 100 units (one per buyer);
// exactly 100 win, the rest are SOLD_OUT, and the SKU shows 100 reserved, none available.
func TestHotSKURaceSellsExactlyTheStock(t *testing.T) {
	const stock, buyers, goroutines = 100, 1000, 50
	forEachServer(t, []int{1, 2}, func(t *testing.T, s *server) {
		for _, kind := range []string{"Client per goroutine", "Pipeline", "ShardAware"} {
			kind := kind
			t.Run(kind, func(t *testing.T) {
				ctx := testContext(t)
				admin, err := Dial(ctx, s.admin, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer admin.Close()
				sku := uniq(1)
				defineSKU(t, s, admin, PutSKU{SKU: sku, StockTotal: stock, PerUserLimit: 1})
				var shared Doer
				switch kind {
				case "Pipeline":
					shared, err = DialPipeline(ctx, s.public, nil)
				case "ShardAware":
					shared, err = DialShardAware(ctx, s.public, nil)
				}
				if err != nil {
					t.Fatal(err)
				}
				accounts := uniq(buyers)
				var ok, soldOut, other int64
				var wg sync.WaitGroup
				start := make(chan struct{})
				for g := 0; g < goroutines; g++ {
					wg.Add(1)
					go func(g int) {
						defer wg.Done()
						client := shared
						if client == nil {
							c, err := Dial(ctx, s.public, nil)
							if err != nil {
								atomic.AddInt64(&other, 1)
								return
							}
							defer c.Close()
							client = c
						}
						<-start
						for b := g; b < buyers; b += goroutines {
							reply, err := client.Do(ctx, Reserve{Account: accounts + uint64(b), SKU: sku, Key: 1, Quantity: 1})
							switch {
							case err == nil && reply.Result == ResultOK:
								atomic.AddInt64(&ok, 1)
							case err == nil && reply.Result == ResultSoldOut:
								atomic.AddInt64(&soldOut, 1)
							default:
								t.Errorf("buyer %d: %v %+v", b, err, reply)
								atomic.AddInt64(&other, 1)
							}
						}
					}(g)
				}
				close(start)
				wg.Wait()
				if shared != nil {
					shared.Close()
				}
				if ok != stock || soldOut != buyers-stock || other != 0 {
					t.Fatalf("OK %d, SOLD_OUT %d, other %d: want exactly %d OK", ok, soldOut, other, stock)
				}
				waitAllShards(t, s, sku, func(q Reply) bool {
					return q.SKU.Reserved == stock && q.SKU.Available == 0 && q.SKU.Sold == 0
				})
			})
		}
	})
}

// Requests that park in a waitlist hold their Pipeline slot without stopping the others:
// responses to later requests overtake the parked one, matched by request id.
func TestPipelineAnswersOvertakeAParkedReserve(t *testing.T) {
	forEachServer(t, []int{2}, func(t *testing.T, s *server) {
		ctx := testContext(t)
		admin, err := Dial(ctx, s.admin, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		sku := uniq(1)
		defineSKU(t, s, admin, PutSKU{SKU: sku, StockTotal: 1})
		p, err := DialPipeline(ctx, s.public, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		holder, waiter := uniq(1), uniq(1)
		expectDo(t, "RESERVE the unit", p, Reserve{Account: holder, SKU: sku, Key: 1, Quantity: 1}, ResultOK)
		parked := doAsync(ctx, p, Reserve{Account: waiter, SKU: sku, Key: 1, Quantity: 1, WaitMs: 30_000})
		waitForState(t, p, waiter, 1, StateWaiting)
		for i := 0; i < 100; i++ {
			expectDo(t, "PING past the parked RESERVE", p, Ping{}, ResultOK)
		}
		if n := p.InFlight(); n != 1 {
			t.Fatalf("in flight %d, want the parked RESERVE only", n)
		}
		select {
		case r := <-parked:
			t.Fatalf("the parked RESERVE was answered early: %+v %v", r.reply, r.err)
		case <-time.After(10 * time.Millisecond):
		}
		expectDo(t, "CANCEL the holder", p, Cancel{Account: holder, Target: ByReserveKey(1), Key: 2}, ResultOK)
		r := <-parked
		expect(t, "the parked RESERVE, matched", r.reply, r.err, ResultOK)
	})
}

// expectDo sends req and checks its result code.
func expectDo(t *testing.T, what string, d Doer, req Request, want ResultCode) Reply {
	t.Helper()
	reply, err := d.Do(testContext(t), req)
	return expect(t, what, reply, err, want)
}
