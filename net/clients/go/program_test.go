package rush

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// demoAccount hands out demo-sale accounts (funded: 1..=1000) no other test uses, a fresh
// one per run (go test -count N reuses the servers).
var demoAccount uint64 = 700

// The example program (examples/reserve) against the demo sale, run twice: the first run
// reserves and confirms, the second sends the same keys and gets DUPLICATE of the same
// reservation, and both exit 0.
func TestExampleProgramReservesAndConfirms(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "reserve")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./examples/reserve")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/reserve: %v\n%s", err, out)
	}
	reservation := regexp.MustCompile(`reservation (\d+), state (\w+)`)
	for _, backend := range backends {
		s := sharedServer(t, backend, 1)
		account := strconv.FormatUint(atomic.AddUint64(&demoAccount, 1), 10)
		var ids []string
		for run := 0; run < 2; run++ {
			out, err := exec.Command(bin, s.public, account).CombinedOutput()
			if err != nil {
				t.Fatalf("%s run %d: %v\n%s", backend, run, err, out)
			}
			text := string(out)
			want := []string{"RESERVE: OK (original OK)", "CONFIRM: OK (original OK) state CONFIRMED", "QUERY_SKU: OK total 1000"}
			if run == 1 {
				want = []string{"RESERVE: DUPLICATE (original OK)", "CONFIRM: DUPLICATE (original OK) state CONFIRMED", "QUERY_SKU: OK total 1000"}
			}
			for _, line := range want {
				if !strings.Contains(text, line) {
					t.Fatalf("%s run %d: no %q in\n%s", backend, run, line, text)
				}
			}
			m := reservation.FindStringSubmatch(text)
			if m == nil || m[1] == "0" {
				t.Fatalf("%s run %d: no reservation in\n%s", backend, run, text)
			}
			ids = append(ids, m[1])
		}
		if ids[0] != ids[1] {
			t.Fatalf("%s: the re-run's DUPLICATE names reservation %s, the first run made %s", backend, ids[1], ids[0])
		}
	}
}
