package tail

import "testing"

func TestBufferKeepsTheEnd(t *testing.T) {
	b := &Buffer{Max: 5}
	b.Write([]byte("abc"))
	b.Write([]byte("defg"))
	if got := b.String(); got != "cdefg" {
		t.Fatalf("got %q, want the last 5 bytes cdefg", got)
	}
}
