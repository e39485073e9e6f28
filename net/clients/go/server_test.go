package rush

// The test harness: a real `rush serve` per backend and shard count, started by the tests.
//
// The binary is $RUSH_BIN when set; otherwise the tests run `cargo build --release --bin
// rush` at the repository root and use target/release/rush (under $CARGO_TARGET_DIR when
// set). If neither works the whole run fails: no test is skipped.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// backends are the server's two I/O backends; every server test runs on both.
var backends = []string{"io_uring", "epoll"}

var (
	rushBin    string
	configFile string // small engine tables: quick to start, ample for these tests
	// benchConfigFile sets nothing: rush serve's default tables, which hold the
	// benchmark's rounds of 100,000 reservations each.
	benchConfigFile string
)

const testConfig = `# rush serve --config for the Go client's tests: smaller tables than the defaults.
sku_max = 4096
account_max = 100000
reservation_max = 200000
waitlist_max = 4096
request_key_max = 400000
limit_entry_max = 200000
`

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		bin, err := findRush()
		if err != nil {
			fmt.Fprintf(os.Stderr, "rush Go client tests: no rush binary: %v\n", err)
			return 1
		}
		rushBin = bin
		dir, err := os.MkdirTemp("", "rush-go-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		configFile = filepath.Join(dir, "rush.toml")
		if err := os.WriteFile(configFile, []byte(testConfig), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		benchConfigFile = filepath.Join(dir, "bench.toml")
		if err := os.WriteFile(benchConfigFile, []byte("# rush serve's defaults\n"), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if runsExamples() {
			// The package Example reserves against the demo sale of a server it finds in
			// RUSH_ADDR, as a program would.
			demo, err := startServer("epoll", 1)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			shared.servers["example"] = demo
			os.Setenv("RUSH_ADDR", demo.public)
		}
		code := m.Run()
		if err := stopSharedServers(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		return code
	}()
	os.Exit(code)
}

// runsExamples tells whether -run lets the Example run (it always does without -run).
func runsExamples() bool {
	run := flag.Lookup("test.run")
	if run == nil || run.Value.String() == "" {
		return true
	}
	re, err := regexp.Compile(run.Value.String())
	return err == nil && re.MatchString("Example")
}

func findRush() (string, error) {
	if bin := os.Getenv("RUSH_BIN"); bin != "" {
		info, err := os.Stat(bin)
		if err != nil {
			return "", fmt.Errorf("RUSH_BIN=%s: %w", bin, err)
		}
		if info.IsDir() || info.Mode()&0o111 == 0 {
			return "", fmt.Errorf("RUSH_BIN=%s is not an executable file", bin)
		}
		return bin, nil
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "Cargo.toml")); err != nil {
		return "", fmt.Errorf("the repository root %s has no Cargo.toml (set RUSH_BIN): %w", root, err)
	}
	fmt.Fprintln(os.Stderr, "rush Go client tests: RUSH_BIN is not set; cargo build --release --bin rush")
	cmd := exec.Command("cargo", "build", "--release", "--bin", "rush")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("cargo build --release --bin rush in %s: %w", root, err)
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join(root, "target")
	} else if !filepath.IsAbs(target) {
		target = filepath.Join(root, target)
	}
	return filepath.Join(target, "release", "rush"), nil
}

// server is one `rush serve` process.
type server struct {
	backend string
	shards  int
	public  string // 127.0.0.1:port
	admin   string
	// shardPorts[i] is shard i's own port.
	shardPorts []int

	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	log    []string
	// dataDir is the server's own temporary data directory (removed when it exits).
	dataDir string
}

// listeningLine is `rush: listening on ADDR (public), ADDR (admin), shards on A..=B (auto)`.
// With --shard-ports off it ends `no per-shard ports` instead.
var listeningLine = regexp.MustCompile(`^rush: listening on (\S+) \(public\), (\S+) \(admin\), (?:shards on (\d+)\.\.=(\d+)|no per-shard ports)`)

// startServer starts `rush serve` on free loopback ports (port 0, per-shard ports `auto`)
// and waits for its listening line.
func startServer(backend string, shards int, extra ...string) (*server, error) {
	args := []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "none",
		"--shards", strconv.Itoa(shards), "--io", backend, "--no-pin"}
	given := strings.Join(extra, " ")
	if !strings.Contains(given, "--shard-ports") {
		args = append(args, "--shard-ports", "auto")
	}
	if !strings.Contains(given, "--config") {
		args = append(args, "--config", configFile)
	}
	// rush serve is durable by default (sync, journals in --data-dir): each test server gets
	// a directory of its own, removed when it exits.
	dataDir := ""
	if !strings.Contains(given, "--data-dir") && !strings.Contains(given, "--durability none") {
		dir, err := os.MkdirTemp("", "rush-go-data-")
		if err != nil {
			return nil, err
		}
		dataDir = dir
		args = append(args, "--data-dir", dir)
	}
	args = append(args, extra...)
	cmd := exec.Command(rushBin, args...)
	cmd.Env = append(os.Environ(), "RUSH_IO=") // the flag decides, whatever the environment says
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", rushBin, err)
	}
	s := &server{backend: backend, shards: shards, cmd: cmd, exited: make(chan struct{}), dataDir: dataDir}
	listening := make(chan []string, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			line := scanner.Text()
			s.mu.Lock()
			s.log = append(s.log, line)
			s.mu.Unlock()
			if m := listeningLine.FindStringSubmatch(line); m != nil {
				listening <- m
			}
		}
		_ = cmd.Wait()
		if s.dataDir != "" {
			_ = os.RemoveAll(s.dataDir)
		}
		close(s.exited)
	}()
	select {
	case m := <-listening:
		s.public, s.admin = m[1], m[2]
		if m[3] == "" {
			return s, nil // no per-shard ports
		}
		first, _ := strconv.Atoi(m[3])
		last, _ := strconv.Atoi(m[4])
		for port := first; port <= last; port++ {
			s.shardPorts = append(s.shardPorts, port)
		}
		if len(s.shardPorts) != shards {
			s.kill()
			return nil, fmt.Errorf("rush serve --shards %d announced shard ports %d..=%d", shards, first, last)
		}
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("rush serve %s exited before listening:\n%s", strings.Join(args, " "), s.logText())
	case <-time.After(60 * time.Second):
		s.kill()
		return nil, fmt.Errorf("rush serve %s: no listening line in 60 s:\n%s", strings.Join(args, " "), s.logText())
	}
}

func (s *server) name() string { return fmt.Sprintf("%s/%d-shard", s.backend, s.shards) }

func (s *server) shardAddr(i int) string { return "127.0.0.1:" + strconv.Itoa(s.shardPorts[i]) }

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// stop sends SIGTERM and requires a clean exit (status 0, the `stopped` summary).
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.kill()
		return fmt.Errorf("%s did not stop on SIGTERM:\n%s", s.name(), s.logText())
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with status %d:\n%s", s.name(), code, s.logText())
	}
	if !strings.Contains(s.logText(), "rush: stopped;") {
		return fmt.Errorf("%s: no stop summary:\n%s", s.name(), s.logText())
	}
	return nil
}

// Servers shared by the tests of a run, one per backend and shard count; every test uses
// ids of its own (uniq), so they do not disturb each other.
var shared = struct {
	sync.Mutex
	servers map[string]*server
}{servers: map[string]*server{}}

func sharedServer(t *testing.T, backend string, shards int) *server {
	t.Helper()
	key := fmt.Sprintf("%s/%d", backend, shards)
	shared.Lock()
	defer shared.Unlock()
	if s, ok := shared.servers[key]; ok {
		return s
	}
	s, err := startServer(backend, shards)
	if err != nil {
		t.Fatalf("cannot start rush serve: %v", err)
	}
	shared.servers[key] = s
	return s
}

func stopSharedServers() error {
	shared.Lock()
	defer shared.Unlock()
	var errs []string
	for key, s := range shared.servers {
		if err := s.stop(); err != nil {
			errs = append(errs, err.Error())
		}
		delete(shared.servers, key)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// forEachServer runs f as a subtest on every backend with the given shard counts.
func forEachServer(t *testing.T, shardCounts []int, f func(t *testing.T, s *server)) {
	for _, backend := range backends {
		for _, shards := range shardCounts {
			backend, shards := backend, shards
			t.Run(fmt.Sprintf("%s/%d-shard", backend, shards), func(t *testing.T) {
				f(t, sharedServer(t, backend, shards))
			})
		}
	}
}

// nextID hands out ids no other test uses (above the demo sale's 1..=1000).
var nextID uint64 = 1_000_000

// uniq returns the first of n fresh ids.
func uniq(n uint64) uint64 { return atomic.AddUint64(&nextID, n) - n + 1 }

// testContext bounds a test's calls: nothing here may hang the run.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expect checks a call's outcome and returns the reply.
func expect(t *testing.T, what string, reply Reply, err error, want ResultCode) Reply {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if reply.Result != want {
		t.Fatalf("%s: %v (original %v), want %v; reply %+v", what, reply.Result, reply.Original, want, reply)
	}
	return reply
}

// waitAllShards polls QUERY_SKU on every shard's own port until ok holds on each: an admin
// change is applied by the SKU's coordinator and reaches the other shards a moment later.
func waitAllShards(t *testing.T, s *server, sku uint64, ok func(Reply) bool) {
	t.Helper()
	ctx := testContext(t)
	for i := range s.shardPorts {
		c, err := Dial(ctx, s.shardAddr(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			reply, err := c.Do(ctx, QuerySKU{SKU: sku})
			if err != nil {
				t.Fatal(err)
			}
			if ok(reply) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shard %d: SKU %d never reached the expected state: %+v", i, sku, reply)
			}
			time.Sleep(2 * time.Millisecond)
		}
		c.Close()
	}
}

// defineSKU creates a SKU through the admin listener and waits until every shard knows it.
func defineSKU(t *testing.T, s *server, admin Doer, spec PutSKU) {
	t.Helper()
	reply, err := admin.Do(testContext(t), spec)
	expect(t, "PUT_SKU", reply, err, ResultOK)
	waitAllShards(t, s, spec.SKU, func(r Reply) bool { return r.Result == ResultOK })
}
