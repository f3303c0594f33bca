//go:build unix

package main

import (
	"os"
	"runtime"
	"syscall"
)

// maxRSSKiB returns the peak resident set size of the exited process in KiB.
// Linux reports ru_maxrss in KiB, macOS in bytes.
func maxRSSKiB(ps *os.ProcessState) int64 {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss) / 1024
	}
	return int64(ru.Maxrss)
}

// flushDirtyPages writes back dirty pages left by the previous run, so that
// one tool's deferred writeback is not billed to the next tool's wall time.
func flushDirtyPages() { syscall.Sync() }
