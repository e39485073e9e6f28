package rush

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer plays a Rush server that misbehaves on purpose. For the n-th request it reads
// (counted over all its connections, from 0) it calls answer with the request frame and the
// well-formed response a server would send; answer returns the bytes to send instead
// (nil: send nothing) and whether to hang up afterwards.
type fakeServer struct {
	listener    net.Listener
	answer      func(n int, request, valid []byte) (out []byte, hangUp bool)
	requests    int32
	connections int32
	wg          sync.WaitGroup
	// stop closes the listener and every connection (idempotent).
	stop func()
}

func startFake(t *testing.T, answer func(n int, request, valid []byte) ([]byte, bool)) *fakeServer {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startFakeOn(t, listener, answer)
}

func startFakeOn(t *testing.T, listener net.Listener, answer func(n int, request, valid []byte) ([]byte, bool)) *fakeServer {
	f := &fakeServer{listener: listener, answer: answer}
	var mu sync.Mutex
	var open []net.Conn
	f.stop = func() {
		listener.Close()
		mu.Lock()
		for _, conn := range open {
			conn.Close()
		}
		mu.Unlock()
		f.wg.Wait()
	}
	t.Cleanup(f.stop)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			atomic.AddInt32(&f.connections, 1)
			mu.Lock()
			open = append(open, conn)
			mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer conn.Close()
				request := make([]byte, RequestSize)
				for {
					if _, err := io.ReadFull(conn, request); err != nil {
						return
					}
					n := int(atomic.AddInt32(&f.requests, 1) - 1)
					out, hangUp := f.answer(n, request, validResponse(request))
					if len(out) > 0 {
						if _, err := conn.Write(out); err != nil {
							return
						}
					}
					if hangUp {
						return
					}
				}
			}()
		}
	}()
	return f
}

func (f *fakeServer) addr() string { return f.listener.Addr().String() }

// validResponse is a well-formed answer to a request frame: OK, with a body for RESERVE
// and QUERY_SKU.
func validResponse(request []byte) []byte {
	reply := Reply{Opcode: Opcode(request[3]), RequestID: binary.LittleEndian.Uint64(request[8:])}
	switch reply.Opcode {
	case OpReserve:
		reply.Reservation = Reservation{ID: 1 << 32, SKU: binary.LittleEndian.Uint64(request[24:]), Quantity: 1, State: StateHeld}
	case OpQuerySKU:
		reply.SKU = SKUInfo{SKU: binary.LittleEndian.Uint64(request[16:]), Total: 5, Available: 5}
	}
	return AppendResponse(nil, reply)
}

// malformations are the bad responses of issue 14, each with the error kind it must give.
var malformations = []struct {
	name  string
	req   Request
	kind  ProtocolErrorKind
	bad   func(valid []byte) []byte
	hang  bool // the server hangs up after sending it
	fatal bool
}{
	{"bad magic", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, BadMagic,
		func(b []byte) []byte { b[0] = 'X'; return b }, false, true},
	{"bad version", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, BadVersion,
		func(b []byte) []byte { b[2] = 2; return b }, false, true},
	{"wrong length", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, BadLength,
		func(b []byte) []byte { b[4] = byte(SKUResponseSize); return b }, false, true},
	{"unknown opcode", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, UnknownOpcode,
		func(b []byte) []byte { b[3] = 0x09; return b }, false, true},
	{"truncated body", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, Truncated,
		func(b []byte) []byte { return b[:40] }, true, true},
	{"truncated header", QuerySKU{SKU: 2}, Truncated,
		func(b []byte) []byte { return b[:10] }, true, true},
	{"response to a request not in flight", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, UnexpectedResponse,
		func(b []byte) []byte { b[15] ^= 0x40; return b }, false, true},
	{"unknown result code", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, InvalidField,
		func(b []byte) []byte { b[16] = 99; return b }, false, false},
	{"unknown original result code", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, InvalidField,
		func(b []byte) []byte { b[19] = 1; return b }, false, false},
	{"unknown reservation state", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, InvalidField,
		func(b []byte) []byte { b[20] = 9; return b }, false, false},
	{"paused flag 2", QuerySKU{SKU: 2}, InvalidField,
		func(b []byte) []byte { b[20] = 2; return b }, false, false},
	{"reserved byte", QuerySKU{SKU: 2}, ReservedNotZero,
		func(b []byte) []byte { b[101] = 1; return b }, false, false},
	{"header flags", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, FlagsNotZero,
		func(b []byte) []byte { b[6] = 1; return b }, false, false},
	{"another opcode", Reserve{Account: 1, SKU: 2, Key: 3, Quantity: 1}, OpcodeMismatch,
		func(b []byte) []byte {
			return AppendResponse(nil, Reply{Opcode: OpPing, RequestID: binary.LittleEndian.Uint64(b[8:])})
		}, false, false},
}

func wantKind(t *testing.T, what string, err error, kind ProtocolErrorKind) {
	t.Helper()
	var perr *ProtocolError
	if !errors.As(err, &perr) || perr.Kind != kind {
		t.Fatalf("%s: want a *ProtocolError %v, got %v", what, kind, err)
	}
}

// Malformed responses from a fake server: the Client returns the typed error (never panics),
// drops the connection when the framing is lost, and the next call works.
func TestClientRejectsMalformedResponses(t *testing.T) {
	for _, m := range malformations {
		m := m
		t.Run(m.name, func(t *testing.T) {
			fake := startFake(t, func(n int, _, valid []byte) ([]byte, bool) {
				if n == 0 {
					return m.bad(valid), m.hang
				}
				return valid, false
			})
			ctx := testContext(t)
			c, err := Dial(ctx, fake.addr(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Do(ctx, m.req)
			wantKind(t, "the malformed response", err, m.kind)
			if err.Error() == "" || !strings.HasPrefix(err.Error(), "rush: ") {
				t.Fatalf("message %q", err)
			}
			var perr *ProtocolError
			errors.As(err, &perr)
			if perr.Fatal() != m.fatal {
				t.Fatalf("fatal %v, want %v", perr.Fatal(), m.fatal)
			}
			reply, err := c.Do(ctx, m.req)
			expect(t, "the next call", reply, err, ResultOK)
			wantConnections := int32(1)
			if m.fatal {
				wantConnections = 2
			}
			if n := atomic.LoadInt32(&fake.connections); n != wantConnections {
				t.Fatalf("%d connections, want %d", n, wantConnections)
			}
		})
	}
}

// The same against the Pipeline, with three requests in flight: a frame-local malformation
// fails its own request only; a fatal one fails all three (their outcomes are unknown), and
// the Pipeline reconnects for the next call.
func TestPipelineRejectsMalformedResponses(t *testing.T) {
	for _, m := range malformations {
		m := m
		t.Run(m.name, func(t *testing.T) {
			fake := startFake(t, func(n int, _, valid []byte) ([]byte, bool) {
				switch {
				case n == 2:
					return m.bad(valid), m.hang
				case n < 2 && m.fatal:
					return nil, false // left in flight
				}
				return valid, false
			})
			ctx := testContext(t)
			p, err := DialPipeline(ctx, fake.addr(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			results := make(chan result, 3)
			for i := 0; i < 3; i++ {
				go func() {
					reply, err := p.Do(ctx, m.req)
					results <- result{reply, err}
				}()
			}
			failed, ok := 0, 0
			for i := 0; i < 3; i++ {
				r := <-results
				if r.err != nil {
					wantKind(t, "a request in flight", r.err, m.kind)
					failed++
				} else if r.reply.Result == ResultOK {
					ok++
				}
			}
			if m.fatal && failed != 3 || !m.fatal && (failed != 1 || ok != 2) {
				t.Fatalf("%d failed, %d OK (fatal %v)", failed, ok, m.fatal)
			}
			expectDo(t, "the next call", p, m.req, ResultOK)
			wantReconnects := uint64(0)
			if m.fatal {
				wantReconnects = 1
			}
			if p.Reconnects() != wantReconnects || p.InFlight() != 0 {
				t.Fatalf("reconnects %d (want %d), in flight %d", p.Reconnects(), wantReconnects, p.InFlight())
			}
		})
	}
}

// A context deadline (or cancellation) bounds a call on a server that does not answer; the
// late answer to the abandoned request is skipped, and the next call gets its own.
func TestContextDeadlines(t *testing.T) {
	ctx := testContext(t)
	for _, kind := range []string{"Client", "Pipeline"} {
		// The server answers requests 0 and 2 only when told to.
		late := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
		fake := startFake(t, func(n int, _, valid []byte) ([]byte, bool) {
			if n == 0 || n == 2 {
				<-late[n/2]
			}
			return valid, false
		})
		var d Doer
		var err error
		if kind == "Client" {
			d, err = Dial(ctx, fake.addr(), nil)
		} else {
			d, err = DialPipeline(ctx, fake.addr(), nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		start := time.Now()
		_, err = d.Do(short, QuerySKU{SKU: 7})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: want DeadlineExceeded, got %v", kind, err)
		}
		if elapsed := time.Since(start); elapsed < 90*time.Millisecond || elapsed > 2*time.Second {
			t.Fatalf("%s: the deadline took %v", kind, elapsed)
		}
		close(late[0])
		reply, err := d.Do(ctx, QuerySKU{SKU: 8})
		if err != nil || reply.SKU.SKU != 8 {
			t.Fatalf("%s: the next call got %+v %v, want its own answer (SKU 8)", kind, reply, err)
		}
		if p, ok := d.(*Pipeline); ok && p.InFlight() != 0 {
			t.Fatalf("the abandoned request still holds a slot after its answer came")
		}
		// A cancelled context ends a call too.
		cancelled, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		if _, err := d.Do(cancelled, QuerySKU{SKU: 9}); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: want Canceled, got %v", kind, err)
		}
		close(late[1])
		if reply, err := d.Do(ctx, QuerySKU{SKU: 10}); err != nil || reply.SKU.SKU != 10 {
			t.Fatalf("%s: after a cancel: %+v %v", kind, reply, err)
		}
		if n := atomic.LoadInt32(&fake.connections); n != 1 {
			t.Fatalf("%s: %d connections: an expired context must not cost the connection", kind, n)
		}
		d.Close()
	}
}

// When MaxInFlight requests await answers, Do waits for a slot and gives up with its
// context: the request is not sent.
func TestPipelineFullWaitsForItsContext(t *testing.T) {
	release := make(chan struct{})
	fake := startFake(t, func(n int, _, valid []byte) ([]byte, bool) {
		<-release
		return valid, false
	})
	ctx := testContext(t)
	p, err := DialPipeline(ctx, fake.addr(), &Config{MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	first := doAsync(ctx, p, Ping{})
	second := doAsync(ctx, p, Ping{})
	for p.InFlight() != 2 {
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = p.Do(short, Ping{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("want a not-sent DeadlineExceeded, got %v", err)
	}
	close(release)
	for _, r := range []<-chan result{first, second} {
		got := <-r
		expect(t, "a waiting PING", got.reply, got.err, ResultOK)
	}
	if n := atomic.LoadInt32(&fake.requests); n != 2 {
		t.Fatalf("the server saw %d requests: the third must not have been sent", n)
	}
}

// Close ends a call in progress with ErrClosed, and every later call.
func TestCloseEndsCallsInProgress(t *testing.T) {
	fake := startFake(t, func(int, []byte, []byte) ([]byte, bool) { return nil, false })
	ctx := testContext(t)
	c, err := Dial(ctx, fake.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := DialPipeline(ctx, fake.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Doer{c, p} {
		pending := doAsync(ctx, d, Ping{})
		time.Sleep(50 * time.Millisecond)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-pending:
			if !errors.Is(r.err, ErrClosed) {
				t.Fatalf("%T: the call in progress got %v", d, r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%T: Close did not end the call in progress", d)
		}
		if _, err := d.Do(ctx, Ping{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("%T: a call after Close got %v", d, err)
		}
	}
}
