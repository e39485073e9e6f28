package rush

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sort"
	"sync"
	"time"
)

// Pipeline keeps many requests in flight on one connection. It is safe for concurrent use:
// any number of goroutines call Do at once; their requests are written together (one write
// system call carries every request queued meanwhile) and each response is matched to its
// request by request id, in whatever order the server answers.
//
// In flight is bounded by Config.MaxInFlight (default DefaultMaxInFlight, the server's own
// per-connection limit). When that many requests await responses, Do waits until one is
// answered or its context ends; a request whose caller gave up keeps its slot until its
// response arrives (the server still counts it), or until the connection is replaced.
//
// Reconnect: when the connection breaks, the Pipeline connects again and re-sends every
// request still in flight, oldest first, unchanged: same request ids and same request keys.
// The server's request keys make that exactly-once: a request that had taken effect before
// the break is answered ResultDuplicate with its original outcome in Reply.Original and the
// reservation (or wallet) as it is now, one that had not takes effect now. A RESERVE that was
// parked in a waitlist is answered DUPLICATE with original WAITING: read its final outcome
// with QueryReservation by its key. After Config.ReconnectAttempts failures in a row, the
// requests in flight fail with a *ConnectionError; the next call starts reconnecting again,
// so the Pipeline recovers when the server is back.
//
// A malformed response (*ProtocolError) fails the request it answers; if it breaks the
// framing (ProtocolError.Fatal), every request in flight fails with it (their outcomes are
// unknown: retry them with the same keys) and the Pipeline reconnects for later calls.
type Pipeline struct {
	addr string
	cfg  Config

	// slots holds one token per request in flight: its capacity is Config.MaxInFlight.
	slots chan struct{}
	// wake tells the writer there is something to write (capacity 1: wake-ups coalesce).
	wake chan struct{}
	// done is closed by Close.
	done     chan struct{}
	doneOnce sync.Once
	// demand wakes the reader when a call comes after reconnecting gave up (capacity 1).
	demand chan struct{}
	// ctx ends with done; it bounds dials and reconnect pauses.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// conn is nil while reconnecting.
	conn net.Conn
	// idle: reconnecting gave up and the reader waits for demand.
	idle    bool
	pending map[uint64]*call
	// out holds encoded requests not yet handed to the writer; spare is the writer's
	// previous buffer, reused so that steady traffic does not allocate.
	out        []byte
	spare      []byte
	nextID     uint64
	reconnects uint64
	// err is ErrClosed once Close was called.
	err error
}

// call is one request in flight.
type call struct {
	id      uint64
	op      Opcode
	account uint64
	// values are the request's field values (see appendFrame); frame is the encoded
	// request, kept to re-send it after a reconnect.
	values [maxFields]uint64
	frame  []byte
	reply  Reply
	err    error
	// done is signalled once reply or err is set (capacity 1).
	done chan struct{}
	// abandoned: the caller's context ended and nobody waits. Written and read under
	// Pipeline.mu while the call is pending; stable once it is not.
	abandoned bool
}

var callPool = sync.Pool{New: func() any {
	return &call{done: make(chan struct{}, 1), frame: make([]byte, 0, RequestSize)}
}}

// DialPipeline connects a Pipeline to addr (host:port). cfg may be nil for the defaults.
// Call Close to release its connection and goroutines.
func DialPipeline(ctx context.Context, addr string, cfg *Config) (*Pipeline, error) {
	p := &Pipeline{
		addr:    addr,
		cfg:     cfg.withDefaults(),
		wake:    make(chan struct{}, 1),
		demand:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: make(map[uint64]*call),
	}
	p.slots = make(chan struct{}, p.cfg.MaxInFlight)
	conn, err := p.cfg.dial(ctx, addr)
	if err != nil {
		return nil, &ConnectionError{Addr: addr, Attempts: 1, Err: err}
	}
	p.conn = conn
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(2)
	go p.writeLoop()
	go p.readLoop(conn)
	return p, nil
}

// Addr returns the address the Pipeline connects to.
func (p *Pipeline) Addr() string { return p.addr }

// MaxInFlight returns the Pipeline's bound on requests in flight.
func (p *Pipeline) MaxInFlight() int { return cap(p.slots) }

// InFlight returns the number of requests sent (or queued) and not yet answered, including
// those whose callers gave up.
func (p *Pipeline) InFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Reconnects returns how many times the connection was re-established.
func (p *Pipeline) Reconnects() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reconnects
}

// Do sends req and waits for its reply. The error is nil whenever a well-formed reply
// arrived, whatever its result code; otherwise it is the context's error (wrapped), a
// *ProtocolError, a *ConnectionError or ErrClosed. When the context ends after the request
// was queued, the request may still take effect: retry it with the same key.
func (p *Pipeline) Do(ctx context.Context, req Request) (Reply, error) {
	op := req.Opcode()
	if err := ctx.Err(); err != nil {
		return Reply{}, fmt.Errorf("rush: %v not sent: %w", op, err)
	}
	select {
	case p.slots <- struct{}{}: // the common case: a free slot, no need for the full select
	default:
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return Reply{}, fmt.Errorf("rush: %v not sent: %d requests in flight (Config.MaxInFlight): %w",
				op, cap(p.slots), ctx.Err())
		case <-p.done:
			return Reply{}, ErrClosed
		}
	}
	c := callPool.Get().(*call)
	req.wire(&c.values)
	c.op, c.account, c.reply, c.err, c.abandoned = op, accountOf(op, &c.values), Reply{}, nil, false

	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		<-p.slots
		callPool.Put(c)
		return Reply{}, err
	}
	p.nextID++
	c.id = p.nextID
	c.frame = appendFrame(c.frame[:0], op, c.id, &c.values)
	p.pending[c.id] = c
	// While reconnecting (conn == nil) this is harmless: the new connection's output is
	// rebuilt from pending.
	p.out = append(p.out, c.frame...)
	wakeReader := p.idle
	p.idle = false
	p.mu.Unlock()
	if wakeReader {
		p.demand <- struct{}{}
	}
	p.kick()

	ctxDone := ctx.Done()
	if ctxDone == nil {
		// A context that never ends (context.Background): a plain receive is cheaper than
		// a select.
		<-c.done
		reply, err := c.reply, c.err
		callPool.Put(c)
		return reply, err
	}
	select {
	case <-c.done:
	case <-ctxDone:
		p.mu.Lock()
		if p.pending[c.id] == c {
			// Still in flight: the reader recycles it when its response comes.
			c.abandoned = true
			p.mu.Unlock()
			return Reply{}, contextError(ctx, op, c.id)
		}
		p.mu.Unlock()
		<-c.done // being delivered right now
	}
	reply, err := c.reply, c.err
	callPool.Put(c)
	return reply, err
}

// Ping sends PING and returns the server's shard topology.
func (p *Pipeline) Ping(ctx context.Context) (Topology, error) {
	reply, err := p.Do(ctx, Ping{})
	return reply.Topology, err
}

// Close closes the connection and stops the Pipeline's goroutines. Calls in flight and
// later calls return ErrClosed.
func (p *Pipeline) Close() error {
	p.finish(ErrClosed)
	p.wg.Wait()
	return nil
}

func (p *Pipeline) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// writeLoop hands the queued requests to the socket, all that accumulated in one write.
// On a write error it closes the connection; the reader then sees the break and reconnects.
func (p *Pipeline) writeLoop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.wake:
		case <-p.done:
			return
		}
		// Let the callers that are runnable now (typically those woken by the last batch
		// of responses) queue their requests first: one write then carries them all. A
		// write system call costs far more than this yield.
		runtime.Gosched()
		for {
			p.mu.Lock()
			conn := p.conn
			if conn == nil || len(p.out) == 0 {
				p.mu.Unlock()
				break
			}
			buf := p.out
			p.out, p.spare = p.spare[:0], nil
			p.mu.Unlock()

			_, err := conn.Write(buf)

			p.mu.Lock()
			p.spare = buf[:0]
			p.mu.Unlock()
			if err != nil {
				_ = conn.Close()
				break
			}
		}
	}
}

// delivery is one decoded response (or frame-local error) on its way to its caller.
type delivery struct {
	reply Reply
	err   error
	c     *call // its call, once matched
}

// readLoop reads responses and delivers them; when the connection breaks it reconnects.
// When reconnecting gives up, it waits for the next call before trying again.
func (p *Pipeline) readLoop(conn net.Conn) {
	defer p.wg.Done()
	rd := newFrameReader(64 << 10)
	batch := make([]delivery, 0, 256)
	failures := 0
	var cause error
	for {
		if conn != nil {
			cause = p.readConn(conn, &rd, &batch, &failures)
			_ = conn.Close()
			if p.closed() {
				return
			}
			var perr *ProtocolError
			if errors.As(cause, &perr) {
				// The server sent something this client cannot frame or pair: the requests
				// in flight get the error rather than a re-send to the same server.
				p.failPending(cause)
			}
			failures++
		}
		if conn = p.reconnect(&failures, cause); conn != nil {
			continue
		}
		// Gave up (or closed): every call in flight has failed. Wait for the next call.
		select {
		case <-p.demand:
			failures = 0
		case <-p.done:
			return
		}
	}
}

func (p *Pipeline) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// readConn reads from conn until it fails, delivering every response. It returns the I/O
// error or the fatal *ProtocolError that ended it.
func (p *Pipeline) readConn(conn net.Conn, rd *frameReader, batch *[]delivery, failures *int) error {
	rd.reset()
	for {
		if err := rd.fill(conn); err != nil {
			return err
		}
		*batch = (*batch)[:0]
		var fatal error
		for {
			// Decode straight into the batch's storage (see decodeResponse).
			*batch = append(*batch, delivery{})
			d := &(*batch)[len(*batch)-1]
			ok, err := rd.next(&d.reply)
			if err != nil {
				var perr *ProtocolError
				if errors.As(err, &perr) && perr.Fatal() {
					*batch = (*batch)[:len(*batch)-1]
					fatal = err
					break
				}
				d.err = err
				continue
			}
			if !ok {
				*batch = (*batch)[:len(*batch)-1]
				break
			}
		}
		if len(*batch) > 0 {
			*failures = 0
			if err := p.deliver(*batch); err != nil {
				return err
			}
		}
		if fatal != nil {
			return fatal
		}
	}
}

// deliver hands responses to their callers. A response for an id not in flight is a fatal
// *ProtocolError (returned after the responses before it are delivered).
func (p *Pipeline) deliver(batch []delivery) error {
	var unexpected error
	p.mu.Lock()
	for i := range batch {
		d := &batch[i]
		c := p.pending[d.reply.RequestID]
		if c == nil {
			unexpected = &ProtocolError{Kind: UnexpectedResponse, Opcode: d.reply.Opcode, RequestID: d.reply.RequestID}
			break
		}
		delete(p.pending, c.id)
		d.c = c
		if d.err == nil && d.reply.Opcode != c.op {
			d.err = &ProtocolError{Kind: OpcodeMismatch, Opcode: d.reply.Opcode, RequestID: c.id, Value: uint64(c.op)}
		}
	}
	p.mu.Unlock()
	for i := range batch {
		if d := &batch[i]; d.c != nil {
			p.complete(d.c, d.reply, d.err)
			d.c = nil
		}
	}
	return unexpected
}

// complete ends a call that has been removed from pending: its caller gets the reply or
// the error, or, if it gave up, the call is recycled. Either way its slot is free again.
func (p *Pipeline) complete(c *call, reply Reply, err error) {
	if c.abandoned {
		callPool.Put(c)
	} else {
		if err == nil {
			fillAccount(&reply, c.account)
		}
		c.reply, c.err = reply, err
		c.done <- struct{}{}
	}
	<-p.slots
}

// takePending removes every call in flight (with p.mu held).
func (p *Pipeline) takePending() []*call {
	calls := make([]*call, 0, len(p.pending))
	for id, c := range p.pending {
		calls = append(calls, c)
		delete(p.pending, id)
	}
	return calls
}

// failPending fails every request in flight with err.
func (p *Pipeline) failPending(err error) {
	p.mu.Lock()
	calls := p.takePending()
	p.out = p.out[:0]
	p.mu.Unlock()
	for _, c := range calls {
		p.complete(c, Reply{}, err)
	}
}

// reconnect opens a new connection after a break and queues every request in flight on it
// again, oldest first, unchanged. It returns nil when the Pipeline is closed, or after
// Config.ReconnectAttempts failures in a row: then the calls in flight fail with a
// *ConnectionError and the Pipeline is idle until the next call.
func (p *Pipeline) reconnect(failures *int, cause error) net.Conn {
	p.mu.Lock()
	p.conn = nil
	p.mu.Unlock()
	backoff := p.cfg.ReconnectBackoff
	for {
		if *failures > p.cfg.ReconnectAttempts {
			err := &ConnectionError{Addr: p.addr, Attempts: *failures, Err: cause}
			p.mu.Lock()
			calls := p.takePending()
			p.out = p.out[:0]
			// Under the same lock as taking the calls: a call that comes after this
			// wakes the reader, one that came before has been taken and fails.
			p.idle = p.err == nil
			p.mu.Unlock()
			for _, c := range calls {
				p.complete(c, Reply{}, err)
			}
			return nil
		}
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-p.done:
			timer.Stop()
			return nil
		}
		backoff = nextBackoff(backoff)
		conn, err := p.cfg.dial(p.ctx, p.addr)
		if err != nil {
			cause = err
			*failures++
			continue
		}
		p.mu.Lock()
		if p.err != nil {
			p.mu.Unlock()
			_ = conn.Close()
			return nil
		}
		// Callers that gave up are not re-sent for: nobody waits for their answer, and
		// their outcome can be read back by key. Their slots are freed.
		var dropped []*call
		ids := make([]uint64, 0, len(p.pending))
		for id, c := range p.pending {
			if c.abandoned {
				delete(p.pending, id)
				dropped = append(dropped, c)
				continue
			}
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		p.out = p.out[:0]
		for _, id := range ids {
			p.out = append(p.out, p.pending[id].frame...)
		}
		p.conn = conn
		p.reconnects++
		p.mu.Unlock()
		for _, c := range dropped {
			p.complete(c, Reply{}, nil)
		}
		p.kick()
		return conn
	}
}

// finish ends the Pipeline with err (ErrClosed): the connection is closed, every call in
// flight fails with err, and so does every later call.
func (p *Pipeline) finish(err error) {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return
	}
	p.err = err
	conn := p.conn
	p.conn = nil
	calls := p.takePending()
	p.out = nil
	p.mu.Unlock()
	p.doneOnce.Do(func() {
		close(p.done)
		p.cancel()
	})
	if conn != nil {
		_ = conn.Close()
	}
	for _, c := range calls {
		p.complete(c, Reply{}, err)
	}
}
