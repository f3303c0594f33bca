package cli

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestLimitMemory: bakery runs with a 150 MiB soft memory limit, and
// GOMEMLIMIT (applied by the Go runtime itself) wins over it.
func TestLimitMemory(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	debug.SetMemoryLimit(math.MaxInt64)
	if got := LimitMemory([]string{"HOME=/root"}); got != 150<<20 {
		t.Errorf("LimitMemory without GOMEMLIMIT = %d, want %d", got, 150<<20)
	}
	if got := debug.SetMemoryLimit(-1); got != 150<<20 {
		t.Errorf("runtime limit without GOMEMLIMIT = %d, want %d", got, 150<<20)
	}

	debug.SetMemoryLimit(1 << 30) // as the runtime sets GOMEMLIMIT=1GiB
	if got := LimitMemory([]string{"GOMEMLIMIT=1GiB"}); got != 1<<30 {
		t.Errorf("LimitMemory with GOMEMLIMIT=1GiB = %d, want %d", got, 1<<30)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("runtime limit with GOMEMLIMIT=1GiB = %d, want it unchanged (%d)", got, 1<<30)
	}
}
