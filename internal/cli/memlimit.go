package cli

import (
	"runtime/debug"
	"strings"
)

// DefaultMemoryLimit is the soft memory limit bakery runs with unless
// GOMEMLIMIT sets another: 150 MiB. Reading a large catalog keeps about
// 1.5 KiB per AMI and 2.5 KiB per version (10,000 versions × 3 regions:
// about 75 MB), and decoding DescribeImages pages makes garbage; with no
// limit the Go collector lets the heap grow to twice what was live, which
// took such a run past 200 MB. Near the limit the collector runs more
// often instead; it never stops a run whose live data exceeds it.
const DefaultMemoryLimit = 150 << 20

// LimitMemory sets the Go runtime's soft memory limit to
// DefaultMemoryLimit unless environ has GOMEMLIMIT (which the runtime has
// applied already), and returns the limit in force.
func LimitMemory(environ []string) int64 {
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOMEMLIMIT=") {
			return debug.SetMemoryLimit(-1)
		}
	}
	debug.SetMemoryLimit(DefaultMemoryLimit)
	return DefaultMemoryLimit
}
