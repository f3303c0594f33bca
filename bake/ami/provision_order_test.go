package ami_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/bake/ami"
)

// TestProvisionShellFailureKeepsStderrInOrder runs, several times, a
// script that writes to standard output and standard error in turn and
// then fails: the error's last 20 lines are exactly the last 20 lines the
// script wrote, in the order it wrote them, the stderr line that explains
// the failure last. Over SSH the two streams arrive on the same channel
// but are copied by two goroutines, so unless the remote shell merges
// them, stdout lines overtake stderr ones and push them out of the tail.
func TestProvisionShellFailureKeepsStderrInOrder(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	p := provBlock("shell")
	p.Inline = []string{
		`for i in $(seq 1 40); do echo "out $i"; echo "err $i" >&2; done`,
		`echo "fatal: cannot find nginx" >&2`,
		"exit 3",
	}
	var want strings.Builder
	want.WriteString("failed with exit status 3: last 20 lines of output:\n")
	for i := 31; i <= 40; i++ {
		if i > 31 {
			fmt.Fprintf(&want, "  out %d\n", i)
		}
		fmt.Fprintf(&want, "  err %d\n", i)
	}
	want.WriteString("  fatal: cannot find nginx\n")
	for run := 1; run <= 8; run++ {
		out := newProvLines()
		err := ami.Provision(context.Background(), comm, p, out)
		if err == nil {
			t.Fatalf("run %d: Provision succeeded, want exit status 3", run)
		}
		if !strings.Contains(err.Error(), want.String()) {
			t.Fatalf("run %d: the error does not quote the last 20 lines in the order written; want\n%s\ngot:\n%v", run, want.String(), err)
		}
		// The streamed output is in order too, and complete.
		var lines []string
		for i := 1; i <= 40; i++ {
			lines = append(lines, fmt.Sprintf("  shell: out %d", i), fmt.Sprintf("  shell: err %d", i))
		}
		lines = append(lines, "  shell: fatal: cannot find nginx")
		if got := out.String(); got != strings.Join(lines, "\n")+"\n" {
			t.Fatalf("run %d: streamed output is not every line in the order written:\n%s", run, got)
		}
	}
}
