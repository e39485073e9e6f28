// Command reserve reserves one unit from a running `rush serve` (its embedded demo sale has
// SKU 1 and funded accounts 1..=1000), confirms it, and reads the SKU back: the Go twin of
// net/examples/reserve.rs.
//
//	cargo run --release --bin rush -- serve &
//	cd net/clients/go && go run ./examples/reserve 127.0.0.1:7070 42
//
// Run it twice: the second run sends the same request keys, so nothing happens twice; the
// server answers DUPLICATE with the original reservation.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"rush"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "reserve:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	addr, account := "127.0.0.1:7070", uint64(42)
	if len(args) > 0 {
		addr = args[0]
	}
	if len(args) > 1 {
		parsed, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			return fmt.Errorf("account %q: %w", args[1], err)
		}
		account = parsed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := rush.Dial(ctx, addr, nil)
	if err != nil {
		return err
	}
	defer client.Close()

	// The request key makes the RESERVE exactly-once: sending it again answers DUPLICATE.
	reply, err := client.Do(ctx, rush.Reserve{
		Account:  account,
		SKU:      1,
		Quantity: 1,
		Key:      1,
		Flags:    rush.FlagPay,
		HoldMs:   30_000,
	})
	if err != nil {
		return err
	}
	fmt.Printf("RESERVE: %v (original %v) reservation %d, state %v, amount %d\n",
		reply.Result, reply.Original, reply.Reservation.ID, reply.Reservation.State, reply.Reservation.Amount)
	// OK, or DUPLICATE of OK on a re-run: the reservation exists either way.
	if err := reply.Err(); err != nil {
		return fmt.Errorf("the reservation was refused: %w", err)
	}

	reply, err = client.Do(ctx, rush.Confirm{Account: account, Target: rush.ByReserveKey(1), Key: 2})
	if err != nil {
		return err
	}
	fmt.Printf("CONFIRM: %v (original %v) state %v\n", reply.Result, reply.Original, reply.Reservation.State)
	if err := reply.Err(); err != nil {
		return fmt.Errorf("the confirmation was refused: %w", err)
	}

	reply, err = client.Do(ctx, rush.QuerySKU{SKU: 1})
	if err != nil {
		return err
	}
	sku := reply.SKU
	fmt.Printf("QUERY_SKU: %v total %d, available %d, reserved %d, sold %d, price %d\n",
		reply.Result, sku.Total, sku.Available, sku.Reserved, sku.Sold, sku.Price)
	return nil
}
