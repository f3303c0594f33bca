package redact

import (
	"bytes"
	"testing"
)

func TestMaskAsUsesThePlaceholderGiven(t *testing.T) {
	if got := MaskAs("token=s3cr3t and s3cr3t", []string{"s3cr3t", "ab"}, "(sensitive value)"); got != "token=(sensitive value) and (sensitive value)" {
		t.Errorf("MaskAs = %q", got)
	}
}

func TestStreamMasksEachWriteAndHoldsNothingBack(t *testing.T) {
	var out bytes.Buffer
	s := NewStream(&out, "(sensitive value)")
	s.Write([]byte("before: s3cr3t\n"))
	s.Add("s3cr3t", "ab")
	s.Write([]byte("\rprogress s3cr3t")) // no newline: written at once
	if got := out.String(); got != "before: s3cr3t\n\rprogress (sensitive value)" {
		t.Errorf("written %q", got)
	}
	if s.Unwrap() != &out {
		t.Error("Unwrap does not return the underlying writer")
	}
}
