package rush

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// maxStale bounds the request ids a Client remembers as abandoned (their context ended
// before their response came). Past it the connection is dropped instead, so a server that
// never answers cannot make the Client grow.
const maxStale = 1024

// Client is a blocking client: one connection, one request at a time. It is safe for
// concurrent use, but calls are serialized; use a Pipeline to have many requests in flight.
//
// When the connection breaks during a call, the Client reconnects and sends the request
// again, unchanged: the request key makes the retry exactly-once (a request that had taken
// effect is answered ResultDuplicate with the original outcome).
type Client struct {
	addr string
	cfg  Config

	// mu is held for a whole call: it serializes calls and guards the fields below it.
	mu     sync.Mutex
	rd     frameReader
	wbuf   []byte
	values [maxFields]uint64 // the request's field values (see appendFrame)
	reply  Reply             // decoding target (see decodeResponse)
	nextID uint64
	// stale holds the ids of requests abandoned on this connection whose responses may
	// still arrive; they are skipped.
	stale map[uint64]struct{}

	// cmu guards conn and closed, which Close changes without waiting for a call in
	// progress (closing the connection is what makes that call return).
	cmu    sync.Mutex
	conn   net.Conn
	closed bool
}

// Dial connects a Client to addr (host:port). cfg may be nil for the defaults.
func Dial(ctx context.Context, addr string, cfg *Config) (*Client, error) {
	c := &Client{addr: addr, cfg: cfg.withDefaults(), rd: newFrameReader(4096)}
	conn, err := c.cfg.dial(ctx, addr)
	if err != nil {
		return nil, &ConnectionError{Addr: addr, Attempts: 1, Err: err}
	}
	c.conn = conn
	return c, nil
}

// Addr returns the address the Client connects to.
func (c *Client) Addr() string { return c.addr }

// Do sends req and waits for its reply. The error is nil whenever a well-formed reply
// arrived, whatever its result code; otherwise it is the context's error (wrapped; the
// request may still take effect), a *ProtocolError, a *ConnectionError or ErrClosed.
func (c *Client) Do(ctx context.Context, req Request) (Reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	op := req.Opcode()
	c.nextID++
	id := c.nextID
	if err := ctx.Err(); err != nil {
		return Reply{}, fmt.Errorf("rush: %v not sent: %w", op, err)
	}
	req.wire(&c.values)
	c.wbuf = appendFrame(c.wbuf[:0], op, id, &c.values)
	failures := 0
	backoff := c.cfg.ReconnectBackoff
	for {
		conn, closed := c.current()
		if closed {
			return Reply{}, ErrClosed
		}
		if conn == nil {
			if failures > 0 {
				if err := sleepCtx(ctx, backoff); err != nil {
					return Reply{}, contextError(ctx, op, id)
				}
				backoff = nextBackoff(backoff)
			}
			fresh, err := c.cfg.dial(ctx, c.addr)
			if err != nil {
				if ctx.Err() != nil {
					return Reply{}, contextError(ctx, op, id)
				}
				failures++
				if failures > c.cfg.ReconnectAttempts {
					return Reply{}, &ConnectionError{Addr: c.addr, Attempts: failures, Err: err}
				}
				continue
			}
			if !c.install(fresh) {
				return Reply{}, ErrClosed
			}
			conn = fresh
		}
		reply, err := c.roundTrip(ctx, conn, id)
		if err == nil {
			fillAccount(&reply, accountOf(op, &c.values))
			return reply, nil
		}
		if _, closed := c.current(); closed {
			return Reply{}, ErrClosed
		}
		var perr *ProtocolError
		switch {
		case errors.Is(err, errContext):
			return Reply{}, contextError(ctx, op, id)
		case errors.As(err, &perr):
			if perr.Fatal() {
				c.drop()
			}
			return Reply{}, err
		default:
			// The connection broke: the request may or may not have reached the server.
			// Send it again on a new connection, with the same id and key.
			c.drop()
			failures++
			if failures > c.cfg.ReconnectAttempts {
				return Reply{}, &ConnectionError{Addr: c.addr, Attempts: failures, Err: err}
			}
		}
	}
}

func (c *Client) current() (net.Conn, bool) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.conn, c.closed
}

// install makes conn the Client's connection (with c.mu held); false if Close came first.
func (c *Client) install(conn net.Conn) bool {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if c.closed {
		_ = conn.Close()
		return false
	}
	c.conn = conn
	c.rd.reset()
	c.stale = nil
	return true
}

// errContext marks a round trip cut short by the caller's context.
var errContext = errors.New("context ended")

// roundTrip writes the encoded request (c.wbuf) and reads until its response. It returns
// errContext when ctx ended, a *ProtocolError for malformed input, or the I/O error of a
// broken connection.
func (c *Client) roundTrip(ctx context.Context, conn net.Conn, id uint64) (Reply, error) {
	deadline, _ := ctx.Deadline() // the zero time (no deadline) when there is none
	if err := conn.SetDeadline(deadline); err != nil {
		return Reply{}, err
	}
	stop := watchContext(ctx, conn)
	defer stop()

	written, err := conn.Write(c.wbuf)
	if err != nil {
		if isTimeout(err) {
			if written > 0 {
				// Half a frame went out: the stream can no longer be framed.
				c.drop()
			}
			return Reply{}, errContext
		}
		return Reply{}, err
	}
	for {
		ok, err := c.rd.next(&c.reply)
		reply := c.reply
		if err != nil {
			var perr *ProtocolError
			if errors.As(err, &perr) && !perr.Fatal() {
				if _, abandoned := c.stale[reply.RequestID]; abandoned {
					// A malformed answer to a request nobody waits for any more.
					delete(c.stale, reply.RequestID)
					continue
				}
				if reply.RequestID != id {
					return Reply{}, &ProtocolError{Kind: UnexpectedResponse, Opcode: reply.Opcode, RequestID: reply.RequestID}
				}
			}
			return Reply{}, err
		}
		if ok {
			if reply.RequestID == id {
				if reply.Opcode != Opcode(c.wbuf[3]) {
					return Reply{}, &ProtocolError{Kind: OpcodeMismatch, Opcode: reply.Opcode, RequestID: id,
						Value: uint64(c.wbuf[3])}
				}
				return reply, nil
			}
			if _, abandoned := c.stale[reply.RequestID]; abandoned {
				delete(c.stale, reply.RequestID)
				continue
			}
			return Reply{}, &ProtocolError{Kind: UnexpectedResponse, Opcode: reply.Opcode, RequestID: reply.RequestID}
		}
		if err := c.rd.fill(conn); err != nil {
			if isTimeout(err) {
				c.abandon(id)
				return Reply{}, errContext
			}
			return Reply{}, err
		}
	}
}

// abandon remembers that request id's response will arrive after its caller left.
func (c *Client) abandon(id uint64) {
	if len(c.stale) >= maxStale {
		c.drop()
		return
	}
	if c.stale == nil {
		c.stale = make(map[uint64]struct{})
	}
	c.stale[id] = struct{}{}
}

// drop closes the connection (with c.mu held); the next call opens a new one.
func (c *Client) drop() {
	c.cmu.Lock()
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
	c.cmu.Unlock()
	c.rd.reset()
	c.stale = nil
}

// Ping sends PING and returns the server's shard topology.
func (c *Client) Ping(ctx context.Context) (Topology, error) {
	reply, err := c.Do(ctx, Ping{})
	return reply.Topology, err
}

// Close closes the connection; a call in progress returns ErrClosed, and so do calls after
// Close.
func (c *Client) Close() error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.closed = true
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}
