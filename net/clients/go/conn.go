package rush

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Defaults of Config.
const (
	DefaultDialTimeout       = 5 * time.Second
	DefaultReconnectAttempts = 5
	DefaultReconnectBackoff  = 20 * time.Millisecond
	// DefaultMaxInFlight is the server's default limit of requests in flight per connection
	// (PROTOCOL.md 1.3): more would only wait in the server's socket buffer.
	DefaultMaxInFlight = 4096
	// MaxMaxInFlight bounds Config.MaxInFlight: a Pipeline's output buffer and request
	// table grow up to MaxInFlight entries.
	MaxMaxInFlight = 1 << 20
	// maxBackoff caps the doubling of the reconnect pause.
	maxBackoff = time.Second
)

// Config holds the settings of a Client, Pipeline or ShardAware. The zero value (or a nil
// *Config) means the defaults.
type Config struct {
	// DialTimeout bounds each connection attempt, on top of the caller's context.
	// Default DefaultDialTimeout.
	DialTimeout time.Duration
	// ReconnectAttempts is how many times in a row a broken connection is re-established
	// (requests in flight are re-sent unchanged, with the same request keys) before the
	// calls fail with a *ConnectionError. The count restarts whenever a response arrives.
	// 0 means DefaultReconnectAttempts; a negative value disables re-sending: a break fails
	// the requests in flight at once (a later call still opens a new connection).
	ReconnectAttempts int
	// ReconnectBackoff is the pause before the first reconnect attempt, doubled after each
	// failed one (at most one second). Default DefaultReconnectBackoff.
	ReconnectBackoff time.Duration
	// MaxInFlight bounds the requests in flight on one Pipeline connection (at most
	// MaxMaxInFlight). When it is reached, Do waits for a response to free a slot, or for
	// its context to end. Default DefaultMaxInFlight.
	MaxInFlight int
	// AdminAddr is the server's admin listener, where ShardAware sends admin operations
	// (PUT_SKU, ADJUST_STOCK, PAUSE, RESUME, DEPOSIT, WITHDRAW). Unused by Client and
	// Pipeline, which send everything to the address they were given.
	AdminAddr string
	// Dial opens a connection (for example a TLS one to a TLS terminator in front of the
	// server). Default: a net.Dialer's DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *Config) withDefaults() Config {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ReconnectAttempts == 0 {
		cfg.ReconnectAttempts = DefaultReconnectAttempts
	} else if cfg.ReconnectAttempts < 0 {
		cfg.ReconnectAttempts = 0
	}
	if cfg.ReconnectBackoff <= 0 {
		cfg.ReconnectBackoff = DefaultReconnectBackoff
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxInFlight > MaxMaxInFlight {
		cfg.MaxInFlight = MaxMaxInFlight
	}
	if cfg.Dial == nil {
		var dialer net.Dialer
		cfg.Dial = dialer.DialContext
	}
	return cfg
}

func (c *Config) dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.DialTimeout)
	defer cancel()
	return c.Dial(ctx, "tcp", addr)
}

// nextBackoff doubles a reconnect pause, up to maxBackoff.
func nextBackoff(d time.Duration) time.Duration {
	if d *= 2; d > maxBackoff {
		return maxBackoff
	}
	return d
}

// sleepCtx pauses for d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// frameReader accumulates the bytes of a connection and cuts them into response frames.
// Its buffer is fixed: a frame is at most MaxFrameSize bytes, so unread bytes are moved to
// the front when less than a frame's room is left.
type frameReader struct {
	buf  []byte
	r, w int // unread bytes are buf[r:w]
}

func newFrameReader(size int) frameReader {
	if size < 2*MaxFrameSize {
		size = 2 * MaxFrameSize
	}
	return frameReader{buf: make([]byte, size)}
}

func (fr *frameReader) reset() { fr.r, fr.w = 0, 0 }

// next decodes the next complete frame into reply. ok is false when more bytes are needed.
// A frame-local error consumes its frame (reply carries its opcode and request id); a fatal
// one consumes nothing, and the connection must be dropped.
func (fr *frameReader) next(reply *Reply) (ok bool, err error) {
	n, err := decodeResponse(fr.buf[fr.r:fr.w], reply)
	fr.r += n
	if err != nil {
		return true, err
	}
	return n > 0, nil
}

// fill reads once from conn. A clean end of stream in the middle of a frame is a Truncated
// *ProtocolError; at a frame boundary it is io.EOF (the connection is merely gone).
func (fr *frameReader) fill(conn net.Conn) error {
	if fr.r == fr.w {
		fr.r, fr.w = 0, 0
	} else if len(fr.buf)-fr.w < MaxFrameSize {
		fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
		fr.r = 0
	}
	n, err := conn.Read(fr.buf[fr.w:])
	fr.w += n
	if n > 0 {
		// Bytes arrived: decode them before looking at the error (io.Reader's contract).
		return nil
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) && fr.r < fr.w {
		return &ProtocolError{Kind: Truncated, Offset: fr.w - fr.r}
	}
	return err
}

// isTimeout reports a deadline error: in this package, always a context's deadline or
// cancellation turned into a socket deadline.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// contextError is the error of a call whose context ended. The socket deadline can fire a
// moment before the context's own timer, so a deadline error with a nil ctx.Err() is the
// context's deadline all the same.
func contextError(ctx context.Context, op Opcode, id uint64) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("rush: %v request %d: %w (its outcome is unknown: retry it with the same key)", op, id, err)
}

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads and writes return.
var aLongTimeAgo = time.Unix(1, 0)

// watchContext makes blocked I/O on conn return when ctx is cancelled (its deadline is set
// on the socket separately). The returned stop waits for the watcher to exit, so a late
// cancellation cannot disturb the next call's deadline.
func watchContext(ctx context.Context, conn net.Conn) (stop func()) {
	done := ctx.Done()
	if done == nil {
		return func() {}
	}
	stopped := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-done:
			_ = conn.SetDeadline(aLongTimeAgo)
		case <-stopped:
		}
	}()
	return func() {
		close(stopped)
		<-exited
	}
}

// fillAccount completes a reply body with the account the request named (it is not on the
// wire).
func fillAccount(reply *Reply, account uint64) {
	if reply.Reservation != (Reservation{}) {
		reply.Reservation.Account = account
	}
	if reply.Wallet != (Wallet{}) {
		reply.Wallet.Account = account
	}
}

// accountOf returns the account a request names (0 for SKU-level requests), from its field
// values.
func accountOf(op Opcode, values *[maxFields]uint64) uint64 {
	spec := op.spec()
	if spec == nil || spec.accountField < 0 {
		return 0
	}
	return values[spec.accountField]
}
