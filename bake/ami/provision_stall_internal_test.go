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
// successful upload received. The counters are written by the upload
// goroutines provUpload starts: read them with counts.
type stuckComm struct {
	packersdk.Communicator
	stuckTimes int
	stall      time.Duration // the stall bound; 50ms when zero
	onStuck    func()        // called once an upload hangs, if set

	mu       sync.Mutex
	uploads  int
	aborts   int
	abortCh  chan struct{}
	received []string
}

func (c *stuckComm) stallTimeout() time.Duration {
	if c.stall == 0 {
		return 50 * time.Millisecond
	}
	return c.stall
}

// counts returns the uploads started, the aborts and what the successful
// uploads received.
func (c *stuckComm) counts() (uploads, aborts int, received []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uploads, c.aborts, append([]string(nil), c.received...)
}

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
		if c.onStuck != nil {
			c.onStuck()
		}
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
	if uploads, aborts, received := c.counts(); uploads != 2 || aborts != 1 || len(received) != 1 || received[0] != "#!/bin/sh\necho hi\n" {
		t.Errorf("uploads %d, aborts %d, received %q; want 2 uploads, 1 abort and the whole script once", uploads, aborts, received)
	}

	c = &stuckComm{stuckTimes: 2}
	err := provUpload(context.Background(), c, "/tmp/x.sh", strings.NewReader("x"), nil)
	if err == nil || !strings.Contains(err.Error(), "no data moved for 50ms, twice") {
		t.Fatalf("provUpload through a connection that stays stuck = %v, want an error saying it stalled twice", err)
	}
	if uploads, aborts, _ := c.counts(); uploads != 2 || aborts != 2 {
		t.Errorf("uploads %d, aborts %d; want 2 and 2", uploads, aborts)
	}
}

// TestUploadStopsWhenCancelled: a cancel aborts a stuck upload at once
// rather than waiting for the stall bound (an hour here, so only the
// cancel can end the upload), and does not retry it.
func TestUploadStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &stuckComm{stuckTimes: 1, stall: time.Hour, onStuck: cancel}
	if err := provUpload(ctx, c, "/tmp/x", strings.NewReader("x"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("provUpload cancelled while stuck = %v, want context.Canceled", err)
	}
	if uploads, aborts, _ := c.counts(); uploads != 1 || aborts != 1 {
		t.Errorf("%d uploads and %d aborts after a cancel, want 1 and 1 (the stuck upload aborted, no retry)", uploads, aborts)
	}
}
