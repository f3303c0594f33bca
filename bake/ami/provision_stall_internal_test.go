package ami

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

// stuckComm is a communicator whose first stuckTimes uploads hang without
// reading a byte (an SFTP channel that never opens) until the connection
// is aborted; later uploads read everything. It records what each
// successful upload received.
type stuckComm struct {
	packersdk.Communicator
	stuckTimes int

	mu       sync.Mutex
	uploads  int
	aborts   int
	abortCh  chan struct{}
	received []string
}

func (c *stuckComm) stallTimeout() time.Duration { return 50 * time.Millisecond }

func (c *stuckComm) abortSSH() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aborts++
	if c.abortCh != nil {
		close(c.abortCh)
		c.abortCh = nil
	}
}

func (c *stuckComm) Upload(_ string, in io.Reader, _ *os.FileInfo) error {
	c.mu.Lock()
	c.uploads++
	stuck := c.uploads <= c.stuckTimes
	var ch chan struct{}
	if stuck {
		ch = make(chan struct{})
		c.abortCh = ch
	}
	c.mu.Unlock()
	if stuck {
		<-ch
		return errors.New("connection reset")
	}
	b, err := io.ReadAll(in)
	c.mu.Lock()
	c.received = append(c.received, string(b))
	c.mu.Unlock()
	return err
}

// TestUploadRetriesAStuckTransferOnce: an upload that moves no data for
// the SSH timeout resets the connection and starts again from the first
// byte; a second stall is an error, not a hang.
func TestUploadRetriesAStuckTransferOnce(t *testing.T) {
	c := &stuckComm{stuckTimes: 1}
	in := strings.NewReader("#!/bin/sh\necho hi\n")
	if _, err := in.Seek(5, io.SeekStart); err != nil { // a reader part-read by the stuck try
		t.Fatal(err)
	}
	if err := provUpload(context.Background(), c, "/tmp/x.sh", in, nil); err != nil {
		t.Fatalf("provUpload = %v, want success on the second try", err)
	}
	if c.uploads != 2 || c.aborts != 1 || len(c.received) != 1 || c.received[0] != "#!/bin/sh\necho hi\n" {
		t.Errorf("uploads %d, aborts %d, received %q; want 2 uploads, 1 abort and the whole script once", c.uploads, c.aborts, c.received)
	}

	c = &stuckComm{stuckTimes: 2}
	err := provUpload(context.Background(), c, "/tmp/x.sh", strings.NewReader("x"), nil)
	if err == nil || !strings.Contains(err.Error(), "no data moved for 50ms, twice") {
		t.Fatalf("provUpload through a connection that stays stuck = %v, want an error saying it stalled twice", err)
	}
	if c.uploads != 2 || c.aborts != 2 {
		t.Errorf("uploads %d, aborts %d; want 2 and 2", c.uploads, c.aborts)
	}
}

// TestUploadStopsWhenCancelled: a cancelled context aborts a stuck
// upload at once rather than waiting for the stall bound.
func TestUploadStopsWhenCancelled(t *testing.T) {
	c := &stuckComm{stuckTimes: 1}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := provUpload(ctx, c, "/tmp/x", strings.NewReader("x"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("provUpload with a cancelled context = %v, want context.Canceled", err)
	}
	if c.uploads != 1 {
		t.Errorf("%d uploads after a cancel, want 1 (no retry)", c.uploads)
	}
}
