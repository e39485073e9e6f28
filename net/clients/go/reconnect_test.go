package rush

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lossyProxy stands between a client and the server. On its first connection it forwards
// cutAfter bytes of requests, waits until the server has answered all of them (so they took
// effect), keeps those answers from the client, and breaks the connection. Later
// connections pass everything both ways.
type lossyProxy struct {
	listener    net.Listener
	connections int32
	// dropped receives the answers the client never saw.
	dropped chan []byte
	wg      sync.WaitGroup
}

func startLossyProxy(t *testing.T, upstream string, cutAfter int) *lossyProxy {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{listener: listener, dropped: make(chan []byte, 1)}
	t.Cleanup(func() {
		listener.Close()
		p.wg.Wait()
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			client, err := listener.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			first := atomic.AddInt32(&p.connections, 1) == 1
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer client.Close()
				defer server.Close()
				if first {
					requests := make([]byte, cutAfter)
					if _, err := io.ReadFull(client, requests); err != nil {
						return
					}
					if _, err := server.Write(requests); err != nil {
						return
					}
					answers := make([]byte, cutAfter)
					if _, err := io.ReadFull(server, answers); err != nil {
						return
					}
					p.dropped <- answers
					return // closes both sides: the client sees the connection break
				}
				done := make(chan struct{}, 2)
				go func() { io.Copy(server, client); done <- struct{}{} }()
				go func() { io.Copy(client, server); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return p
}

func (p *lossyProxy) addr() string { return p.listener.Addr().String() }

// droppedReservations decodes the answers the proxy kept from the client, by request id.
func droppedReservations(t *testing.T, p *lossyProxy) map[uint64]Reservation {
	t.Helper()
	var answers []byte
	select {
	case answers = <-p.dropped:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy never dropped the first connection's answers")
	}
	out := map[uint64]Reservation{}
	for len(answers) > 0 {
		reply, n, err := DecodeResponse(answers)
		if err != nil || n == 0 || reply.Result != ResultOK {
			t.Fatalf("dropped answer: n %d err %v %+v", n, err, reply)
		}
		out[reply.RequestID] = reply.Reservation
		answers = answers[n:]
	}
	return out
}

// The reconnect of issue 14: 40 RESERVEs from 40 goroutines on one Pipeline; the proxy lets
// the first 10 reach the server, drops their answers and breaks the connection. The Pipeline
// reconnects and re-sends all 40 with the same keys: the 10 that took effect answer
// DUPLICATE of OK with the reservation they created, the 30 others OK, and the SKU holds 40
// units, one per buyer, never two.
func TestPipelineReconnectRetriesExactlyOnce(t *testing.T) {
	const requests, executed = 40, 10
	forEachServer(t, []int{2}, func(t *testing.T, s *server) {
		ctx := testContext(t)
		admin, err := Dial(ctx, s.admin, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		sku := uniq(1)
		defineSKU(t, s, admin, PutSKU{SKU: sku, StockTotal: 1000, PerUserLimit: 1})

		proxy := startLossyProxy(t, s.public, executed*RequestSize)
		p, err := DialPipeline(ctx, proxy.addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		accounts := uniq(requests)
		replies := make([]Reply, requests)
		errs := make([]error, requests)
		var wg sync.WaitGroup
		for i := 0; i < requests; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				replies[i], errs[i] = p.Do(ctx, Reserve{Account: accounts + uint64(i), SKU: sku, Key: 5, Quantity: 1})
			}(i)
		}
		wg.Wait()
		dropped := droppedReservations(t, proxy)
		if len(dropped) != executed {
			t.Fatalf("the proxy dropped %d answers", len(dropped))
		}
		duplicates, fresh := 0, 0
		for i, reply := range replies {
			if errs[i] != nil {
				t.Fatalf("RESERVE %d: %v", i, errs[i])
			}
			if reply.Err() != nil {
				t.Fatalf("RESERVE %d: %v", i, reply.Err())
			}
			if original, ok := dropped[reply.RequestID]; ok {
				// Executed before the break: the retry is a DUPLICATE of that very reservation.
				if reply.Result != ResultDuplicate || reply.Original != ResultOK || reply.Reservation.ID != original.ID {
					t.Fatalf("RESERVE %d (id %d) executed before the break: %+v, original %+v", i, reply.RequestID, reply, original)
				}
				duplicates++
				continue
			}
			if reply.Result != ResultOK {
				t.Fatalf("RESERVE %d: %+v", i, reply)
			}
			fresh++
		}
		if duplicates != executed || fresh != requests-executed {
			t.Fatalf("%d DUPLICATE, %d OK: want %d and %d", duplicates, fresh, executed, requests-executed)
		}
		if p.Reconnects() != 1 || atomic.LoadInt32(&proxy.connections) != 2 {
			t.Fatalf("reconnects %d, proxy connections %d", p.Reconnects(), proxy.connections)
		}
		// The server agrees: 40 units held, each buyer's reservation is the one it was told.
		waitAllShards(t, s, sku, func(q Reply) bool { return q.SKU.Reserved == requests && q.SKU.Available == 1000-requests })
		for i, reply := range replies {
			q, err := p.Do(ctx, QueryReservation{Account: accounts + uint64(i), Target: ByReserveKey(5)})
			if err != nil || q.Reservation.ID != reply.Reservation.ID || q.Reservation.State != StateHeld {
				t.Fatalf("buyer %d: %v %+v, told %+v", i, err, q.Reservation, reply.Reservation)
			}
		}
	})
}

// The blocking Client retries the same way: its RESERVE executed, the answer was lost, the
// retry on a new connection is a DUPLICATE of the original reservation.
func TestClientReconnectRetriesExactlyOnce(t *testing.T) {
	forEachServer(t, []int{1}, func(t *testing.T, s *server) {
		ctx := testContext(t)
		admin, err := Dial(ctx, s.admin, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		sku := uniq(1)
		defineSKU(t, s, admin, PutSKU{SKU: sku, StockTotal: 10})
		proxy := startLossyProxy(t, s.public, RequestSize)
		c, err := Dial(ctx, proxy.addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		account := uniq(1)
		reply, err := c.Do(ctx, Reserve{Account: account, SKU: sku, Key: 7, Quantity: 2})
		if err != nil {
			t.Fatal(err)
		}
		original := droppedReservations(t, proxy)[reply.RequestID]
		if reply.Result != ResultDuplicate || reply.Original != ResultOK || reply.Reservation.ID != original.ID ||
			original.ID == 0 || reply.Reservation.Quantity != 2 {
			t.Fatalf("retry %+v, original %+v", reply, original)
		}
		waitAllShards(t, s, sku, func(q Reply) bool { return q.SKU.Reserved == 2 })
	})
}

// A server that accepts and hangs up at once: the Pipeline gives up after
// Config.ReconnectAttempts breaks in a row and fails the call with a *ConnectionError; the
// next call tries again. The Client does the same per call.
func TestReconnectGivesUpWithATypedError(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	defer listener.Close()
	// Each client counts its connection attempts.
	counting := func(dials *int32) *Config {
		var dialer net.Dialer
		return &Config{ReconnectAttempts: 3, ReconnectBackoff: time.Millisecond,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				atomic.AddInt32(dials, 1)
				return dialer.DialContext(ctx, network, addr)
			}}
	}
	var pipelineDials, clientDials int32
	ctx := testContext(t)

	p, err := DialPipeline(ctx, listener.Addr().String(), counting(&pipelineDials))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	_, err = p.Do(ctx, Ping{})
	var cerr *ConnectionError
	if !errors.As(err, &cerr) || cerr.Attempts != 4 || cerr.Addr != listener.Addr().String() {
		t.Fatalf("want a *ConnectionError after 3 reconnects, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("giving up took %v", time.Since(start))
	}
	// The next call tries again (the server may be back), and gives up again.
	if _, err := p.Do(ctx, Ping{}); !errors.As(err, &cerr) || cerr.Attempts != 4 {
		t.Fatalf("the next call: want a *ConnectionError after 3 reconnects, got %v", err)
	}

	// Every round of reconnecting is the first connection or a call's, and 4 attempts.
	if n := atomic.LoadInt32(&pipelineDials); n%4 != 0 || n < 8 {
		t.Fatalf("the Pipeline dialled %d times: want rounds of 4 (1 + 3 reconnects), at least 2", n)
	}

	c, err := Dial(ctx, listener.Addr().String(), counting(&clientDials))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do(ctx, Ping{}); !errors.As(err, &cerr) || cerr.Attempts != 4 {
		t.Fatalf("Client: want a *ConnectionError after 3 reconnects, got %v", err)
	}

	if n := atomic.LoadInt32(&clientDials); n != 4 {
		t.Fatalf("the Client dialled %d times: want 1 + 3 reconnects", n)
	}
	// Re-sending disabled: the first break fails the call; the next call connects anew.
	var onceDials int32
	once := counting(&onceDials)
	once.ReconnectAttempts = -1
	c1, err := Dial(ctx, listener.Addr().String(), once)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	for call := 1; call <= 2; call++ {
		if _, err := c1.Do(ctx, Ping{}); !errors.As(err, &cerr) || cerr.Attempts != 1 {
			t.Fatalf("call %d without re-sending: want a *ConnectionError after 1 attempt, got %v", call, err)
		}
		if n := atomic.LoadInt32(&onceDials); n != int32(call) {
			t.Fatalf("call %d: %d dials", call, n)
		}
	}
	// Nobody listening: the dial fails, typed too.
	listener.Close()
	if _, err := Dial(ctx, listener.Addr().String(), nil); !errors.As(err, &cerr) || cerr.Attempts != 1 {
		t.Fatalf("Dial to a closed port: %v", err)
	}
}

// A Pipeline whose server went away fails its calls with a *ConnectionError, and serves
// again once a server listens on the address again: no need to dial a new one.
func TestPipelineRecoversWhenTheServerComesBack(t *testing.T) {
	first := startFake(t, func(_ int, _, valid []byte) ([]byte, bool) { return valid, false })
	addr := first.addr()
	ctx := testContext(t)
	p, err := DialPipeline(ctx, addr, &Config{ReconnectAttempts: 2, ReconnectBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	expectDo(t, "PING", p, Ping{}, ResultOK)
	first.stop()
	var cerr *ConnectionError
	if _, err := p.Do(ctx, Ping{}); !errors.As(err, &cerr) {
		t.Fatalf("with the server gone: want a *ConnectionError, got %v", err)
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	startFakeOn(t, listener, func(_ int, _, valid []byte) ([]byte, bool) { return valid, false })
	expectDo(t, "PING once the server is back", p, Ping{}, ResultOK)
	if p.Reconnects() != 1 {
		t.Fatalf("reconnects %d", p.Reconnects())
	}
}
