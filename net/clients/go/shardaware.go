package rush

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
)

// ShardAware sends each request straight to the shard that applies it, so the server never
// forwards it between cores (PROTOCOL.md 1.1 and 1.2). It asks the server for its topology
// with a PING, then keeps one Pipeline per shard port (shard i on ShardPortBase + i, at the
// host of the address it was given):
//
//   - RESERVE, CONFIRM, CANCEL, QUERY_ACCOUNT and QUERY_RESERVATION go to the account's home
//     shard (HomeShard);
//   - PING and QUERY_SKU, which any shard answers, rotate over the shards;
//   - admin operations go to Config.AdminAddr, the only listener that accepts them (the
//     server serves it on shard 0, which forwards an admin SKU operation to the SKU's
//     coordinator, CoordinatorShard, and DEPOSIT / WITHDRAW to the account's home shard).
//
// It is safe for concurrent use; each shard's Pipeline bounds its own requests in flight
// (Config.MaxInFlight) and reconnects on its own. The topology is read once: a server
// restarted with another shard count needs a new ShardAware.
type ShardAware struct {
	topology Topology
	shards   []*Pipeline
	admin    *Pipeline // nil without Config.AdminAddr
	next     uint32    // rotates requests that any shard answers
}

// DialShardAware connects to the server at addr (its public address, or any shard port),
// reads its topology and connects to every shard port, and to cfg.AdminAddr when set. It
// checks that the connection to port ShardPortBase + i is served by shard i. It fails when
// the server has no per-shard ports (rush serve --shard-ports off).
func DialShardAware(ctx context.Context, addr string, cfg *Config) (*ShardAware, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("rush: shard-aware: bad address %q: %w", addr, err)
	}
	first, err := Dial(ctx, addr, cfg)
	if err != nil {
		return nil, err
	}
	topology, err := first.Ping(ctx)
	_ = first.Close()
	if err != nil {
		return nil, err
	}
	if topology.ShardCount == 0 || topology.ShardPortBase == 0 {
		return nil, fmt.Errorf("rush: shard-aware: %s reports no per-shard ports (shards %d, port base %d)",
			addr, topology.ShardCount, topology.ShardPortBase)
	}
	if int(topology.ShardPortBase)+int(topology.ShardCount)-1 > 65535 {
		return nil, fmt.Errorf("rush: shard-aware: %s reports shard ports beyond 65535 (base %d, %d shards)",
			addr, topology.ShardPortBase, topology.ShardCount)
	}
	s := &ShardAware{topology: topology}
	for i := 0; i < int(topology.ShardCount); i++ {
		port := int(topology.ShardPortBase) + i
		shardAddr := net.JoinHostPort(host, strconv.Itoa(port))
		p, err := DialPipeline(ctx, shardAddr, cfg)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.shards = append(s.shards, p)
		served, err := p.Ping(ctx)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		if served.Shard != uint16(i) || served.ShardCount != topology.ShardCount {
			_ = s.Close()
			return nil, fmt.Errorf("rush: shard-aware: %s is served by shard %d of %d, expected shard %d of %d",
				shardAddr, served.Shard, served.ShardCount, i, topology.ShardCount)
		}
	}
	if cfg != nil && cfg.AdminAddr != "" {
		admin, err := DialPipeline(ctx, cfg.AdminAddr, cfg)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.admin = admin
	}
	return s, nil
}

// Topology returns the server's shard layout as read at dial time.
func (s *ShardAware) Topology() Topology { return s.topology }

// Shard returns the Pipeline of shard i (0 <= i < Topology().ShardCount).
func (s *ShardAware) Shard(i int) *Pipeline { return s.shards[i] }

// Route returns the connection index a request goes to: its shard, or -1 for the admin
// connection. For PING and QUERY_SKU it is the next shard in rotation.
func (s *ShardAware) Route(req Request) int {
	if req.Opcode().IsAdmin() {
		return -1
	}
	if shard, ok := ShardFor(req, s.topology.ShardCount); ok {
		return int(shard)
	}
	return int(atomic.AddUint32(&s.next, 1) % uint32(len(s.shards)))
}

// Do sends req to the shard that applies it (admin operations to Config.AdminAddr) and waits
// for its reply. Errors are as for Pipeline.Do, plus ErrNoAdminAddress.
func (s *ShardAware) Do(ctx context.Context, req Request) (Reply, error) {
	route := s.Route(req)
	if route < 0 {
		if s.admin == nil {
			return Reply{}, fmt.Errorf("%w: %v", ErrNoAdminAddress, req.Opcode())
		}
		return s.admin.Do(ctx, req)
	}
	return s.shards[route].Do(ctx, req)
}

// Ping sends PING (to a shard in rotation) and returns the topology it reports.
func (s *ShardAware) Ping(ctx context.Context) (Topology, error) {
	reply, err := s.Do(ctx, Ping{})
	return reply.Topology, err
}

// InFlight returns the requests in flight over all connections.
func (s *ShardAware) InFlight() int {
	n := 0
	for _, p := range s.shards {
		n += p.InFlight()
	}
	if s.admin != nil {
		n += s.admin.InFlight()
	}
	return n
}

// Close closes every connection. Calls in flight and later calls return ErrClosed.
func (s *ShardAware) Close() error {
	var errs []error
	for _, p := range s.shards {
		errs = append(errs, p.Close())
	}
	if s.admin != nil {
		errs = append(errs, s.admin.Close())
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Doer is what Client, Pipeline and ShardAware have in common: code that only sends
// requests can take any of them.
type Doer interface {
	Do(ctx context.Context, req Request) (Reply, error)
	Ping(ctx context.Context) (Topology, error)
	Close() error
}

var (
	_ Doer = (*Client)(nil)
	_ Doer = (*Pipeline)(nil)
	_ Doer = (*ShardAware)(nil)
)
