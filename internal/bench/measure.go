package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// sample is one timed run.
type sample struct {
	Wall      time.Duration
	CPU       time.Duration // user+sys of the process and its waited-for children
	MaxRSSKiB int64         // peak resident set size; 0 when unknown
}

// series is every timed run of one measurement.
type series struct {
	Key     string
	Label   string
	Samples []sample
	// ProbeRSSKiB is the peak RSS of the untimed runs that measured it
	// (see command.NoRSS).
	ProbeRSSKiB int64
}

func (s *series) walls() []time.Duration {
	out := make([]time.Duration, len(s.Samples))
	for i, x := range s.Samples {
		out[i] = x.Wall
	}
	return out
}

func (s *series) median() time.Duration { return medianDuration(s.walls()) }

func (s *series) minMax() (time.Duration, time.Duration) {
	w := s.walls()
	return slices.Min(w), slices.Max(w)
}

func (s *series) medianCPU() time.Duration {
	out := make([]time.Duration, len(s.Samples))
	for i, x := range s.Samples {
		out[i] = x.CPU
	}
	return medianDuration(out)
}

func (s *series) peakRSSKiB() int64 {
	m := s.ProbeRSSKiB
	for _, x := range s.Samples {
		m = max(m, x.MaxRSSKiB)
	}
	return m
}

// medianDuration returns the median, averaging the two middle values for an even count.
func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// command describes one external process to time.
type command struct {
	Dir  string
	Env  []string // added to the inherited environment, overriding it
	Args []string
	// NoRSS skips measuring the peak RSS, which polls /proc every 5 ms
	// from the bench while the process runs: a wake-up on one of the
	// cores a process that keeps every core busy needs, and not one a
	// single-threaded process misses, so timed runs of the layer
	// measurements set it and untimed runs measure the memory.
	NoRSS bool
}

func (c command) String() string { return strings.Join(c.Args, " ") }

// runTimed runs c with stdout captured (or discarded) and returns its timing.
// The wall clock covers start to exit of the process only.
func runTimed(ctx context.Context, c command, captureStdout bool) (sample, []byte, error) {
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = mergeEnv(os.Environ(), c.Env)
	var stdout, stderr bytes.Buffer
	if captureStdout {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	flushDirtyPages()
	start := time.Now()
	err := cmd.Start()
	var hwm int64
	if err == nil && c.NoRSS {
		err = cmd.Wait()
	} else if err == nil {
		stop := watchPeakRSS(cmd.Process.Pid)
		err = cmd.Wait()
		hwm = stop()
	}
	wall := time.Since(start)
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 4000 {
			msg = msg[len(msg)-4000:]
		}
		return sample{}, nil, fmt.Errorf("running %s: %w\n%s", c, err, msg)
	}
	s := sample{Wall: wall}
	if ps := cmd.ProcessState; ps != nil {
		s.CPU = ps.UserTime() + ps.SystemTime()
		// rusage's peak counts the bench's own memory (watchPeakRSS):
		// only where /proc cannot be read.
		s.MaxRSSKiB = maxRSSKiB(ps)
		if hwm > 0 {
			s.MaxRSSKiB = hwm
		}
		if c.NoRSS {
			s.MaxRSSKiB = 0
		}
	}
	return s, stdout.Bytes(), nil
}

// mergeEnv returns base with every KEY=VALUE of extra replacing or adding to it.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	override := make(map[string]bool, len(extra))
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		override[k] = true
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !override[k] {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// goSHA256 hashes every file of files (relative to dir) one after another in
// this goroutine and returns the wall time and the digests.
func goSHA256(dir string, files []string) (time.Duration, map[string]string, error) {
	sums := make(map[string]string, len(files))
	buf := make([]byte, 1<<20)
	h := sha256.New()
	flushDirtyPages()
	start := time.Now()
	for _, rel := range files {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return 0, nil, err
		}
		h.Reset()
		_, err = io.CopyBuffer(h, f, buf)
		f.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("hashing %s: %w", rel, err)
		}
		sums[rel] = hex.EncodeToString(h.Sum(nil))
	}
	return time.Since(start), sums, nil
}
