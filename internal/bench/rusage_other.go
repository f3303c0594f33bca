//go:build !unix

package main

import "os"

// maxRSSKiB is unknown on this platform.
func maxRSSKiB(*os.ProcessState) int64 { return 0 }

// flushDirtyPages does nothing on this platform.
func flushDirtyPages() {}
