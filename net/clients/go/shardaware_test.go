package rush

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// ShardAware against a real 2-shard server: connection i is served by shard i (its PING
// says so), and every account-level request goes on the connection of the account's home
// shard as the Rust server computes it (the formulas are held to the Rust vectors in
// TestShardFormulasMatchTheRustVectors). Together: each request reaches its home shard with
// no forwarding hop.
func TestShardAwareSendsEachRequestToItsHomeShard(t *testing.T) {
	forEachServer(t, []int{2}, func(t *testing.T, s *server) {
		ctx := testContext(t)
		admin, err := Dial(ctx, s.admin, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		sku := uniq(1)
		defineSKU(t, s, admin, PutSKU{SKU: sku, StockTotal: 1000})
		client, err := DialShardAware(ctx, s.public, &Config{AdminAddr: s.admin})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if top := client.Topology(); top.ShardCount != 2 || int(top.ShardPortBase) != s.shardPorts[0] {
			t.Fatalf("topology %+v", top)
		}
		for i := 0; i < 2; i++ {
			served, err := client.Shard(i).Ping(ctx)
			if err != nil || served.Shard != uint16(i) {
				t.Fatalf("the connection to shard port %d is served by shard %d (%v)", i, served.Shard, err)
			}
			if client.Shard(i).Addr() != s.shardAddr(i) {
				t.Fatalf("shard %d at %s, the server announced %s", i, client.Shard(i).Addr(), s.shardAddr(i))
			}
		}
		accounts := uniq(400)
		perShard := [2]int{}
		var wg sync.WaitGroup
		errs := make(chan string, 400)
		for a := accounts; a < accounts+400; a++ {
			req := Reserve{Account: a, SKU: sku, Key: 1, Quantity: 1}
			route := client.Route(req)
			if route != int(HomeShard(a, 2)) {
				t.Fatalf("account %d routed to %d, home shard %d", a, route, HomeShard(a, 2))
			}
			perShard[route]++
			wg.Add(1)
			go func(req Reserve) {
				defer wg.Done()
				reply, err := client.Do(ctx, req)
				if err != nil || reply.Result != ResultOK || reply.Reservation.Account != req.Account {
					errs <- fmt.Sprintf("account %d: %v %+v", req.Account, err, reply)
				}
			}(req)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		if perShard[0] < 100 || perShard[1] < 100 {
			t.Fatalf("400 accounts split %v: both shards must be exercised", perShard)
		}
		waitAllShards(t, s, sku, func(q Reply) bool { return q.SKU.Reserved == 400 })
		// Admin SKU operations: the coordinator is computed, but they travel on the admin
		// connection (the only listener that accepts them).
		if client.Route(Pause{SKU: sku}) != -1 {
			t.Fatalf("admin operations go to the admin listener")
		}
		if shard, ok := ShardFor(Pause{SKU: sku}, 2); !ok || shard != CoordinatorShard(sku, 2) {
			t.Fatalf("ShardFor(PAUSE) = %d, coordinator %d", shard, CoordinatorShard(sku, 2))
		}
		expectDo(t, "PAUSE via the admin connection", client, Pause{SKU: sku}, ResultOK)
		waitAllShards(t, s, sku, func(q Reply) bool { return q.SKU.Paused })
		// Requests any shard answers rotate over the shards.
		seen := map[int]bool{}
		for i := 0; i < 4; i++ {
			seen[client.Route(QuerySKU{SKU: sku})] = true
		}
		if len(seen) != 2 {
			t.Fatalf("QUERY_SKU rotation used shards %v", seen)
		}
	})
}

// A server without per-shard ports cannot be used shard-aware: a clear error, not a panic
// or a wrong routing.
func TestShardAwareNeedsShardPorts(t *testing.T) {
	s, err := startServer("epoll", 1, "--shard-ports", "off")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	}()
	_, err = DialShardAware(testContext(t), s.public, nil)
	if err == nil || !strings.Contains(err.Error(), "no per-shard ports") {
		t.Fatalf("want a no-per-shard-ports error, got %v", err)
	}
}
