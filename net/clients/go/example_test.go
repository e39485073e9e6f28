package rush_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"rush"
)

// Reserve a unit, retry with the same key, confirm. The server is a running `rush serve`
// with its embedded demo sale (SKU 1 at 4,999; accounts 1 to 1000 have funds); the tests
// start one and put its address in RUSH_ADDR.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := os.Getenv("RUSH_ADDR")
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	client, err := rush.Dial(ctx, addr, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	reserve := rush.Reserve{Account: 42, SKU: 1, Key: 1, Quantity: 1, Flags: rush.FlagPay}
	reply, err := client.Do(ctx, reserve)
	if err != nil {
		fmt.Println(err) // no reply: the outcome is unknown; retry with the same key
		return
	}
	// Reply.Err is nil for OK, and for DUPLICATE of OK (this example run a second time):
	// either way the reservation exists.
	fmt.Println("reserved:", reply.Err() == nil, "- amount held:", reply.Reservation.Amount)

	// A retry with the same key (after a timeout, say) does not reserve twice.
	retry, err := client.Do(ctx, reserve)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("retry:", retry.Result, "of", retry.Original, "- same reservation:", retry.Reservation.ID == reply.Reservation.ID)

	confirm, err := client.Do(ctx, rush.Confirm{Account: 42, Target: rush.ByReservation(reply.Reservation.ID), Key: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("confirmed:", confirm.Err() == nil, "-", confirm.Reservation.State)

	// Refusals are results, not errors. Demo SKU 1 allows one unit per buyer.
	again, err := client.Do(ctx, rush.Reserve{Account: 42, SKU: 1, Key: 3, Quantity: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("another unit:", again.Result)
	// Output:
	// reserved: true - amount held: 4999
	// retry: DUPLICATE of OK - same reservation: true
	// confirmed: true - CONFIRMED
	// another unit: LIMIT_EXCEEDED
}

// Many goroutines share one Pipeline; their requests travel together on one connection.
func ExamplePipeline() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := os.Getenv("RUSH_ADDR")
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	pipeline, err := rush.DialPipeline(ctx, addr, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pipeline.Close()

	var wg sync.WaitGroup
	var mu sync.Mutex
	reserved := 0
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(account uint64) {
			defer wg.Done()
			// Demo SKU 2: 100 units, two per buyer.
			reply, err := pipeline.Do(ctx, rush.Reserve{Account: account, SKU: 2, Key: 1, Quantity: 2})
			if err != nil {
				fmt.Println(err)
				return
			}
			if reply.Err() == nil { // OK, or DUPLICATE of OK when run again
				mu.Lock()
				reserved++
				mu.Unlock()
			}
		}(uint64(100 + i))
	}
	wg.Wait()
	fmt.Println(reserved, "buyers hold 2 units each")
	// Output: 10 buyers hold 2 units each
}

// The shard formulas of PROTOCOL.md section 1.2.
func ExampleShardFor() {
	shard, routed := rush.ShardFor(rush.Reserve{Account: 42, SKU: 1001, Key: 1, Quantity: 1}, 7)
	fmt.Println(shard, routed, rush.HomeShard(42, 7), rush.CoordinatorShard(1001, 7))
	_, routed = rush.ShardFor(rush.QuerySKU{SKU: 1001}, 7)
	fmt.Println(routed)
	// Output:
	// 2 true 2 6
	// false
}
