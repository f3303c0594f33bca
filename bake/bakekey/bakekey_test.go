package bakekey

import (
	"strings"
	"testing"
)

func TestKeyFramesParts(t *testing.T) {
	sum := func(parts ...string) string {
		k := New("test/v1")
		for i := 0; i+1 < len(parts); i += 2 {
			k.AddString(parts[i], parts[i+1])
		}
		return k.Sum()
	}
	a := sum("x", "ab", "y", "c")
	if !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+64 {
		t.Fatalf("key %q is not sha256:<64 hex>", a)
	}
	if a != sum("x", "ab", "y", "c") {
		t.Error("same parts, different keys")
	}
	// Moving bytes between parts or labels must change the key.
	for _, other := range []string{sum("x", "a", "y", "bc"), sum("xa", "b", "y", "c"), sum("y", "c", "x", "ab")} {
		if other == a {
			t.Errorf("different parts collide: %s", other)
		}
	}
	k := New("test/v2")
	k.AddString("x", "ab")
	k.AddString("y", "c")
	if k.Sum() == a {
		t.Error("scheme does not change the key")
	}
}

func TestAddReaderChecksSize(t *testing.T) {
	k := New("s")
	if err := k.AddReader("f", 5, strings.NewReader("abc")); err == nil {
		t.Fatal("short reader accepted")
	}
	k1, k2 := New("s"), New("s")
	if err := k1.AddReader("f", 3, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	k2.Add("f", []byte("abc"))
	if k1.Sum() != k2.Sum() {
		t.Error("AddReader and Add disagree")
	}
}
