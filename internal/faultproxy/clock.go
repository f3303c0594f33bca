package faultproxy

import (
	"sync"
	"time"
)

// Clock is a fake clock for WithClock: each reading returns the current
// time and then moves it on by the step, so that time passes with the
// requests (the proxy reads its clock once per request); Advance moves it
// by hand. It is safe for concurrent use.
type Clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

// NewClock returns a clock at start that moves by step on each reading
// (0: only Advance moves it).
func NewClock(start time.Time, step time.Duration) *Clock {
	return &Clock{t: start, step: step}
}

// Now returns the clock's time, then moves it on by the step.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
