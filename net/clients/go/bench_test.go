package rush

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPipelineReserve measures pipelined RESERVE throughput, closed loop: every
// Pipeline has RUSH_BENCH_INFLIGHT goroutines (default 64) each calling Do in a loop, over
// RUSH_BENCH_CONNS Pipelines (default 1). The workload is rush bench's seckill-hot shape:
// one SKU of RUSH_BENCH_STOCK units (default 100,000), one unit per buyer, 100,000 buyers,
// a fresh key per request; after the sell-out every RESERVE is refused (SOLD_OUT or
// LIMIT_EXCEEDED), as in a flash sale.
//
// The server is RUSH_BENCH_ADDR (public) and RUSH_BENCH_ADMIN (admin) when set, so that
// `rush bench` can be run against the same process; otherwise the benchmark starts a
// 1-shard `rush serve` itself.
//
//	go test -run '^$' -bench PipelineReserve -benchtime 5s
func BenchmarkPipelineReserve(b *testing.B) {
	conns := envInt(b, "RUSH_BENCH_CONNS", 1)
	inFlight := envInt(b, "RUSH_BENCH_INFLIGHT", 64)
	stock := uint64(envInt(b, "RUSH_BENCH_STOCK", 100_000))
	const buyers = 100_000
	public, admin := benchServer(b)
	ctx := context.Background()

	adminClient, err := Dial(ctx, admin, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer adminClient.Close()
	sku := uint64(time.Now().UnixNano())&0xffffffffff | 1<<40 // fresh on a long-running server
	if reply, err := adminClient.Do(ctx, PutSKU{SKU: sku, StockTotal: stock, PerUserLimit: 1}); err != nil || reply.Result != ResultOK {
		b.Fatalf("PUT_SKU: %v %+v", err, reply)
	}
	time.Sleep(20 * time.Millisecond) // the definition reaches every shard
	pipelines := make([]*Pipeline, conns)
	for i := range pipelines {
		if pipelines[i], err = DialPipeline(ctx, public, &Config{MaxInFlight: inFlight}); err != nil {
			b.Fatal(err)
		}
		defer pipelines[i].Close()
	}
	firstBuyer := sku << 20 // accounts of this run only

	var next, ok, refused, other int64
	var firstOther struct { // the first unexpected outcome, for the failure message
		sync.Once
		what string
	}
	b.ResetTimer()
	cpuBefore := processCPU(b)
	start := time.Now()
	var wg sync.WaitGroup
	for _, p := range pipelines {
		for g := 0; g < inFlight; g++ {
			wg.Add(1)
			go func(p *Pipeline) {
				defer wg.Done()
				for {
					i := atomic.AddInt64(&next, 1)
					if i > int64(b.N) {
						return
					}
					req := Reserve{Account: firstBuyer + uint64(i)%buyers, SKU: sku, Key: uint64(i), Quantity: 1}
					reply, err := p.Do(ctx, req)
					switch {
					case err != nil:
						firstOther.Do(func() { firstOther.what = err.Error() })
						atomic.AddInt64(&other, 1)
					case reply.Result == ResultOK:
						atomic.AddInt64(&ok, 1)
					case reply.Result == ResultSoldOut || reply.Result == ResultLimitExceeded:
						atomic.AddInt64(&refused, 1)
					default:
						firstOther.Do(func() { firstOther.what = reply.Result.String() })
						atomic.AddInt64(&other, 1)
					}
				}
			}(p)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpuBefore
	b.StopTimer()
	if other != 0 || uint64(ok) > stock || ok+refused != int64(b.N) {
		b.Fatalf("OK %d, refused %d, other %d (first: %v) of %d (stock %d)", ok, refused, other, firstOther.what, b.N, stock)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	// The client's own CPU per request (this process: the server is another one). On a
	// shared machine the server's core sets the throughput; this is the client's cost.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "client-cpu-ns/op")
}

// processCPU is the user + system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		b.Fatal(err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

func envInt(b *testing.B, name string, fallback int) int {
	text := os.Getenv(name)
	if text == "" {
		return fallback
	}
	value, err := strconv.Atoi(text)
	if err != nil || value <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, text)
	}
	return value
}

var benchOnce struct {
	sync.Once
	public, admin string
	err           error
}

// benchServer is RUSH_BENCH_ADDR / RUSH_BENCH_ADMIN, or one 1-shard server for the run.
func benchServer(b *testing.B) (public, admin string) {
	if addr := os.Getenv("RUSH_BENCH_ADDR"); addr != "" {
		admin := os.Getenv("RUSH_BENCH_ADMIN")
		if admin == "" {
			b.Fatal("RUSH_BENCH_ADDR needs RUSH_BENCH_ADMIN (the admin address, to create the SKU)")
		}
		return addr, admin
	}
	benchOnce.Do(func() {
		s, err := startServer("auto", 1, "--config", benchConfigFile)
		if err != nil {
			benchOnce.err = err
			return
		}
		shared.Lock()
		shared.servers["bench"] = s
		shared.Unlock()
		benchOnce.public, benchOnce.admin = s.public, s.admin
	})
	if benchOnce.err != nil {
		b.Fatal(benchOnce.err)
	}
	return benchOnce.public, benchOnce.admin
}
