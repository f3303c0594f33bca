// Package tail keeps the end of a stream: the last bytes a peer process
// (moto_server, sshd) logged, to show when a test fails.
package tail

import (
	"bytes"
	"sync"
)

// Buffer keeps the last Max bytes written to it. It is safe for
// concurrent use. The zero value keeps nothing; set Max.
type Buffer struct {
	// Max is how many bytes are kept.
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p, dropping the oldest bytes beyond Max.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.Max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

// String returns what is kept.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
