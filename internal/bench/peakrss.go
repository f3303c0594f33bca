package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// watchPeakRSS polls the peak resident set size of process pid (VmHWM in
// /proc/PID/status, Linux) every few milliseconds until stop is called;
// stop returns the last value read in KiB, 0 when none could be read.
//
// The kernel's ru_maxrss of a child (ProcessState.SysUsage) is not the
// child's own: os/exec starts it with vfork, and at exec Linux folds the
// peak of the memory it shared, the bench's, into the child's maxrss, so a
// bench holding 300 MB reports 300 MB for /bin/true. VmHWM is the peak of
// the child's own memory after exec (Start returns once exec succeeded).
// Growth in the last few milliseconds before exit is missed.
func watchPeakRSS(pid int) (stop func() int64) {
	var peak atomic.Int64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if v := readHWMKiB(pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// readHWMKiB returns VmHWM of process pid in KiB, 0 when unknown (not
// Linux, the process has exited).
func readHWMKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
