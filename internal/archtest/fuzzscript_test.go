package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo writes a stand-in for the go command that prints the outputs
// in turn, one per call, exiting 1 for each but "PASS", and counts its calls.
func fakeGo(t *testing.T, outputs ...string) (goBin, calls string) {
	t.Helper()
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	var script strings.Builder
	script.WriteString("#!/usr/bin/env bash\necho x >> " + calls + "\nn=$(wc -l < " + calls + ")\ncase $n in\n")
	for i, out := range outputs {
		code := "1"
		if out == "PASS" {
			code = "0"
		}
		script.WriteString("  " + string(rune('1'+i)) + ") cat <<'OUT'\n" + out + "\nOUT\n  exit " + code + ";;\n")
	}
	script.WriteString("esac\nexit 3\n")
	goBin = filepath.Join(dir, "go")
	if err := os.WriteFile(goBin, []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return goBin, calls
}

const (
	deadlineRace     = "fuzz: elapsed: 5s, execs: 90 (0/sec), new interesting: 0 (total: 87)\n--- FAIL: FuzzEventTag (5.48s)\n    context deadline exceeded\nFAIL\nexit status 1"
	realFind         = "--- FAIL: FuzzEventTag (0.20s)\n    --- FAIL: FuzzEventTag (0.00s)\n        tags_test.go:40: round trip lost the event\n\n    Failing input written to testdata/fuzz/FuzzEventTag/1f2e\n    To re-run:\n    go test -run=FuzzEventTag/1f2e\nFAIL"
	errorAndDeadline = "--- FAIL: FuzzEventTag (5.10s)\n    tags_test.go:12: setup failed\n    context deadline exceeded\nFAIL"
)

// scripts/fuzz-target.sh repeats a run that ended only on Go 1.26's
// fuzztime deadline race (go.dev/issue/75804), and fails on anything
// fuzzing really found, at once.
func TestFuzzScriptRepeatsOnlyTheDeadlineRace(t *testing.T) {
	script, err := filepath.Abs("../../scripts/fuzz-target.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		outputs   []string
		wantCode  int
		wantCalls int
	}{
		{"passes", []string{"PASS"}, 0, 1},
		{"deadline race, then passes", []string{deadlineRace, "PASS"}, 0, 2},
		{"deadline race twice, then passes", []string{deadlineRace, deadlineRace, "PASS"}, 0, 3},
		{"deadline race three times", []string{deadlineRace, deadlineRace, deadlineRace, "PASS"}, 1, 3},
		{"a failing input", []string{realFind, "PASS"}, 1, 1},
		{"another failure beside the deadline", []string{errorAndDeadline, "PASS"}, 1, 1},
		{"a panic", []string{"panic: boom\n" + deadlineRace, "PASS"}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			goBin, calls := fakeGo(t, tc.outputs...)
			cmd := exec.Command(script, goBin, "catalog/ami", "FuzzEventTag", "5s", "5s", "1")
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(calls)
			if n := strings.Count(string(raw), "x"); code != tc.wantCode || n != tc.wantCalls {
				t.Errorf("exit %d after %d runs, want %d after %d\n%s", code, n, tc.wantCode, tc.wantCalls, out)
			}
		})
	}
}
