package main

import (
	"bytes"
	"math/rand"
	"testing"
	"time"
)

func TestTextIsDeterministicAndCompressesLikeSource(t *testing.T) {
	gen := func() []byte {
		return newWordSource(rand.New(rand.NewSource(1))).fill(nil, textSize)
	}
	a, b := gen(), gen()
	if !bytes.Equal(a, b) {
		t.Fatal("same seed produced different text")
	}
	if len(a) != textSize || a[len(a)-1] != '\n' {
		t.Fatalf("got %d bytes ending in %q, want %d ending in a newline", len(a), a[len(a)-1], textSize)
	}
	// Real source and text files compress about 3–6x with gzip -6.
	if r := gzipRatio(a); r < 3 || r > 6 {
		t.Errorf("gzip ratio %.2f, want 3–6", r)
	}
	t.Logf("gzip -6 ratio %.2f\n%s", gzipRatio(a), a[:400])
}

func TestMedianDuration(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3}, 3},
		{[]time.Duration{5, 1, 3}, 3},
		{[]time.Duration{4, 1, 3, 2}, 2},
	} {
		if got := medianDuration(c.in); got != c.want {
			t.Errorf("medianDuration(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
