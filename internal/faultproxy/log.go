package faultproxy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Fault is what the proxy did to a call.
type Fault string

// The faults a Call can carry.
const (
	// FaultNone: forwarded and answered as moto answered.
	FaultNone Fault = ""
	// FaultThrottled: answered with a throttling error, not forwarded.
	FaultThrottled Fault = "throttled"
	// FaultUnavailable: answered with HTTP 503, not forwarded.
	FaultUnavailable Fault = "unavailable"
	// FaultNotFound: answered with a *.NotFound error for a fresh
	// resource, not forwarded.
	FaultNotFound Fault = "not-found"
	// FaultHidden: forwarded, and fresh resources were cut out of the
	// answer.
	FaultHidden Fault = "hidden"
	// FaultStale: answered with an earlier answer to an identical call,
	// not forwarded.
	FaultStale Fault = "stale"
	// FaultLost: forwarded, took effect, and the answer was dropped.
	FaultLost Fault = "lost"
	// FaultFailed: moto could not be reached; answered with HTTP 502.
	FaultFailed Fault = "failed"
	// FaultInternal: answered with HTTP 500, not forwarded.
	FaultInternal Fault = "internal-error"
	// FaultReset: the connection was closed without forwarding the call
	// or answering it.
	FaultReset Fault = "reset"
	// FaultDelayed: held back before forwarding, then answered as moto
	// answered.
	FaultDelayed Fault = "delayed"
)

// Call is one request the proxy saw.
type Call struct {
	// Time is the clock's reading when the request arrived.
	Time time.Time
	// Action is the API operation: "DescribeImages".
	Action string
	// Service and Region come from the request's credential scope.
	Service, Region string
	// Fault is what the proxy did to the call; FaultNone when nothing.
	Fault Fault
	// Code is the error code injected (RequestLimitExceeded,
	// InvalidAMIID.NotFound, ...), or a note on the fault.
	Code string
}

// String returns "ACTION (REGION)" and the fault, if any.
func (c Call) String() string {
	s := c.Action + " (" + c.Region + ")"
	if c.Fault != FaultNone {
		s += " " + string(c.Fault)
		if c.Code != "" {
			s += " " + c.Code
		}
	}
	return s
}

func (p *Proxy) log(c Call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, c)
}

// Calls returns every call the proxy saw, in the order they arrived.
func (p *Proxy) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// Count returns how many calls of action the proxy saw, faulted or not.
func (p *Proxy) Count(action string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if c.Action == action {
			n++
		}
	}
	return n
}

// Counts returns how many calls the proxy saw, faulted or not, by
// action.
func (p *Proxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for _, c := range p.calls {
		out[c.Action]++
	}
	return out
}

// FaultCounts returns how many calls got each fault, over every action
// (FaultNone is left out).
func (p *Proxy) FaultCounts() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[Fault]int{}
	for _, c := range p.calls {
		if c.Fault != FaultNone {
			out[c.Fault]++
		}
	}
	return out
}

// Faults returns how many calls of action got fault f; action "" counts
// every action.
func (p *Proxy) Faults(action string, f Fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if (action == "" || c.Action == action) && c.Fault == f {
			n++
		}
	}
	return n
}

// RetriedAfter reports whether a call of action that got fault f was
// followed by a call of action that the proxy forwarded (fault FaultNone or
// FaultHidden): the caller tried again and got through.
func (p *Proxy) RetriedAfter(action string, f Fault) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	faulted := false
	for _, c := range p.calls {
		if c.Action != action {
			continue
		}
		switch {
		case c.Fault == f:
			faulted = true
		case faulted && (c.Fault == FaultNone || c.Fault == FaultHidden || c.Fault == FaultDelayed):
			return true
		}
	}
	return false
}

// Summary returns one line per action: how many calls, and how many of
// them got each fault. For test logs.
func (p *Proxy) Summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	type tally struct {
		n      int
		faults map[Fault]int
	}
	by := map[string]*tally{}
	for _, c := range p.calls {
		t := by[c.Action]
		if t == nil {
			t = &tally{faults: map[Fault]int{}}
			by[c.Action] = t
		}
		t.n++
		if c.Fault != FaultNone {
			t.faults[c.Fault]++
		}
	}
	actions := make([]string, 0, len(by))
	for a := range by {
		actions = append(actions, a)
	}
	sort.Strings(actions)
	var b strings.Builder
	for _, a := range actions {
		t := by[a]
		fmt.Fprintf(&b, "%s %d", a, t.n)
		var fs []string
		for f, n := range t.faults {
			fs = append(fs, fmt.Sprintf("%s %d", f, n))
		}
		sort.Strings(fs)
		if len(fs) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(fs, ", "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
