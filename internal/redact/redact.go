// Package redact hides secrets in text on its way to a log or a terminal:
// every occurrence of a secret becomes Placeholder.
//
// A Writer holds back an incomplete line until its newline arrives, so a
// secret split across two Write calls is still found. Secrets shorter
// than MinLen bytes are ignored: masking a value such as "1" or "on"
// everywhere would garble every line and protect nothing, since a value
// that short is guessed at once.
package redact

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"sync"
)

// Placeholder replaces each secret.
const Placeholder = "(sensitive value)"

// MinLen is the length in bytes below which a secret is not masked.
const MinLen = 4

// maxHeld bounds how many bytes of an unfinished line a Writer holds
// before it writes out the part that can no longer start a secret.
const maxHeld = 64 << 10

// Mask returns s with every occurrence of every secret (of at least
// MinLen bytes) replaced by Placeholder. Overlapping or adjacent
// occurrences become one Placeholder. Each line of a secret that spans
// several lines is a secret too.
func Mask(s string, secrets []string) string {
	return MaskAs(s, secrets, Placeholder)
}

// MaskAs is Mask with another placeholder, such as "(sensitive value)"
// in recipe diagnostics and a program's own output.
func MaskAs(s string, secrets []string, placeholder string) string {
	covered := cover(s, secrets)
	if covered == nil {
		return s
	}
	return render(s, covered, placeholder)
}

// cover marks the bytes of s that belong to a secret; it returns nil when
// none does.
func cover(s string, secrets []string) []bool {
	var covered []bool
	for _, sec := range withLines(secrets) {
		if len(sec) < MinLen {
			continue
		}
		for from := 0; from < len(s); {
			i := strings.Index(s[from:], sec)
			if i < 0 {
				break
			}
			if covered == nil {
				covered = make([]bool, len(s))
			}
			start := from + i
			for j := start; j < start+len(sec); j++ {
				covered[j] = true
			}
			from = start + 1 // occurrences may overlap
		}
	}
	return covered
}

// withLines returns secrets followed by the lines of those that span
// several: a program that prints a multi-line secret (a private key) may
// have its output split into lines, each prefixed, before it is masked.
func withLines(secrets []string) []string {
	out := secrets
	for _, sec := range secrets {
		if !strings.Contains(sec, "\n") {
			continue
		}
		if len(out) == len(secrets) {
			out = slices.Clone(secrets)
		}
		for _, l := range strings.Split(sec, "\n") {
			out = append(out, strings.TrimSuffix(l, "\r"))
		}
	}
	return out
}

// render writes s with each run of covered bytes replaced by placeholder.
func render(s string, covered []bool, placeholder string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if !covered[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(placeholder)
		for i < len(s) && covered[i] {
			i++
		}
	}
	return b.String()
}

// Writer masks secrets in what is written through it to another writer.
// It writes complete lines only and holds back the rest until the next
// newline or Flush. It is safe for concurrent use; each Write's complete
// lines reach the underlying writer in one Write call.
type Writer struct {
	w io.Writer

	mu      sync.Mutex
	secrets []string
	held    []byte
}

// NewWriter returns a Writer that masks secrets in what it writes to w.
// Secrets shorter than MinLen bytes are ignored.
func NewWriter(w io.Writer, secrets ...string) *Writer {
	rw := &Writer{w: w}
	rw.Add(secrets...)
	return rw
}

// Add adds secrets to mask from the next Write on, including in the line
// held back now.
func (w *Writer) Add(secrets ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range secrets {
		if len(s) >= MinLen && !slices.Contains(w.secrets, s) {
			w.secrets = append(w.secrets, s)
		}
	}
}

// Secrets returns the secrets w masks.
func (w *Writer) Secrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.secrets)
}

// Mask returns s with w's secrets masked.
func (w *Writer) Mask(s string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Mask(s, w.secrets)
}

// Write masks and writes every complete line of what was held and p, and
// holds the rest. It reports len(p) unless the underlying writer fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held = append(w.held, p...)
	n := bytes.LastIndexByte(w.held, '\n') + 1
	if n == 0 && len(w.held) > maxHeld {
		n = w.safeCut()
	}
	if n == 0 {
		return len(p), nil
	}
	out := Mask(string(w.held[:n]), w.secrets)
	w.held = slices.Clone(w.held[n:])
	if _, err := io.WriteString(w.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// safeCut returns how many bytes of a long unfinished line may be written
// now: none of them can be the start of a secret that the next Write
// completes, and no complete secret is cut in two. w.mu is held.
func (w *Writer) safeCut() int {
	longest := 0
	for _, s := range w.secrets {
		longest = max(longest, len(s))
	}
	cut := len(w.held) - max(longest-1, 0)
	covered := cover(string(w.held), w.secrets)
	for cut > 0 && covered != nil && cut < len(covered) && covered[cut-1] && covered[cut] {
		cut--
	}
	return max(cut, 0)
}

// Flush masks and writes the held, unfinished line.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.held) == 0 {
		return nil
	}
	out := Mask(string(w.held), w.secrets)
	w.held = nil
	_, err := io.WriteString(w.w, out)
	return err
}

// Stream masks secrets in what is written through it to another writer,
// each Write on its own: unlike Writer it holds nothing back, so a
// progress line redrawn in place or a prompt shows at once, but a secret
// split across two Write calls is not found. It suits a program's own
// output, written a line or a document per Write. It is safe for
// concurrent use.
type Stream struct {
	w           io.Writer
	placeholder string

	mu      sync.Mutex
	secrets []string
}

// NewStream returns a Stream that writes to w with each secret (added
// with Add) replaced by placeholder.
func NewStream(w io.Writer, placeholder string) *Stream {
	return &Stream{w: w, placeholder: placeholder}
}

// Add adds secrets to mask from the next Write on. Secrets shorter than
// MinLen bytes are ignored.
func (s *Stream) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range secrets {
		if len(sec) >= MinLen && !slices.Contains(s.secrets, sec) {
			s.secrets = append(s.secrets, sec)
		}
	}
}

// Write masks p and writes it. It reports len(p) unless the underlying
// writer fails.
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	secrets := s.secrets
	s.mu.Unlock()
	if len(secrets) == 0 {
		return s.w.Write(p)
	}
	if _, err := io.WriteString(s.w, MaskAs(string(p), secrets, s.placeholder)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Unwrap returns the writer s writes to (to ask whether it is a
// terminal).
func (s *Stream) Unwrap() io.Writer { return s.w }
