package ami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	packerssh "github.com/hashicorp/packer-plugin-sdk/sdk-internals/communicator/ssh"
	"golang.org/x/crypto/ssh"
)

// sshDefaultTimeout is SSHTarget.Timeout when it is zero, as the recipe's
// ssh_timeout default.
const sshDefaultTimeout = 5 * time.Minute

// sshRetryInterval is the wait between two attempts to reach SSH.
const sshRetryInterval = time.Second

// sshKeepAlive is how often an idle session is pinged, as Packer's
// ssh_keep_alive_interval default.
const sshKeepAlive = 5 * time.Second

// SSHTarget says where and as whom to log in to the builder instance.
type SSHTarget struct {
	// Host is the address to connect to (the instance's public or private
	// IP, or ssh_host).
	Host string
	// Port is the SSH port; 0 means 22.
	Port int
	// User is the login user (ssh_username).
	User string
	// Key is the key to log in with.
	Key *SSHKey
	// Timeout bounds waiting for SSH to answer and accept the key, and
	// waiting for it to come back after a dropped connection; 0 means 5
	// minutes.
	Timeout time.Duration
}

// ConnectSSH waits until SSH on target answers and accepts target.Key for
// target.User, trying every second until target.Timeout has passed or ctx
// is done. A refused login is retried too: cloud-init may not have
// installed the key pair yet. It returns a packersdk.Communicator built
// with packer-plugin-sdk's SSH communicator, transferring files over SFTP.
// The host key is not checked: the builder is a temporary instance whose
// host key nobody knows in advance, as with Packer. Progress and retried
// errors go to log (nil discards them).
//
// The communicator honours the context of Start: when it is done before
// the command ends, the connection is closed, which ends the session at
// once. After such an abort, or after a dropped connection (a reboot), the
// next call waits for SSH to answer again, up to target.Timeout. The
// communicator also implements io.Closer: close it when provisioning ends.
func ConnectSSH(ctx context.Context, target SSHTarget, log io.Writer) (packersdk.Communicator, error) {
	if target.Host == "" {
		return nil, errors.New("connecting over SSH: no host; set ssh_host or give the instance a reachable IP")
	}
	if target.User == "" {
		return nil, fmt.Errorf("connecting over SSH to %s: no user; set ssh_username", target.Host)
	}
	if target.Key == nil || target.Key.Signer == nil {
		return nil, fmt.Errorf("connecting over SSH to %s: no key; create one with NewSSHKey or LoadSSHKey", target.Host)
	}
	if target.Port == 0 {
		target.Port = 22
	}
	if target.Timeout <= 0 {
		target.Timeout = sshDefaultTimeout
	}
	if log == nil {
		log = io.Discard
	}
	c := &sshComm{
		target: target,
		addr:   net.JoinHostPort(target.Host, strconv.Itoa(target.Port)),
		log:    log,
	}
	c.config = &ssh.ClientConfig{
		User: target.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(target.Key.Signer)},
		// A fresh instance's host key is unknown; Packer does not check it either.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	}
	if _, err := c.reconnect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// sshComm is the communicator ConnectSSH returns: packer-plugin-sdk's SSH
// communicator, replaced by a fresh one (after waiting for SSH) when the
// connection dropped or was aborted.
type sshComm struct {
	target SSHTarget
	addr   string
	config *ssh.ClientConfig
	log    io.Writer

	connectMu sync.Mutex // serializes reconnect

	mu     sync.Mutex
	inner  packersdk.Communicator
	conn   net.Conn // inner's current TCP connection
	stale  bool     // the connection dropped or was aborted: reconnect first
	closed bool
}

// Start starts cmd. When ctx is done before cmd ends, the connection is
// closed, which ends the remote session; cmd then exits with
// packersdk.CmdDisconnect.
func (c *sshComm) Start(ctx context.Context, cmd *packersdk.RemoteCmd) error {
	inner, err := c.ready(ctx)
	if err != nil {
		return err
	}
	if err := inner.Start(ctx, cmd); err != nil {
		c.markStale() // the connection may be gone: wait for it next time
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	go func() {
		select {
		case <-exited:
			if cmd.ExitStatus() == packersdk.CmdDisconnect {
				c.markStale()
			}
		case <-ctx.Done():
			c.abortSSH()
		}
	}()
	return nil
}

// stallTimeout is how long an upload may move no data before it counts
// as stuck: the SSH timeout.
func (c *sshComm) stallTimeout() time.Duration { return c.target.Timeout }

// Upload uploads input to path on the builder, with fi's mode when fi is a
// regular file.
func (c *sshComm) Upload(path string, input io.Reader, fi *os.FileInfo) error {
	inner, err := c.ready(context.Background())
	if err != nil {
		return err
	}
	return inner.Upload(path, input, fi)
}

// UploadDir uploads src to dst; a trailing "/" on src uploads its contents.
func (c *sshComm) UploadDir(dst string, src string, exclude []string) error {
	inner, err := c.ready(context.Background())
	if err != nil {
		return err
	}
	return inner.UploadDir(dst, src, exclude)
}

// Download copies path on the builder to output.
func (c *sshComm) Download(path string, output io.Writer) error {
	inner, err := c.ready(context.Background())
	if err != nil {
		return err
	}
	return inner.Download(path, output)
}

// DownloadDir copies src on the builder to dst.
func (c *sshComm) DownloadDir(src string, dst string, exclude []string) error {
	inner, err := c.ready(context.Background())
	if err != nil {
		return err
	}
	return inner.DownloadDir(src, dst, exclude)
}

// Close closes the SSH connection. Later calls fail. A connection that
// is closed already (an interrupt aborted what ran over it, see abortSSH)
// is not an error: the cleanup that closes it wants it closed.
func (c *sshComm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("closing the SSH connection to %s: %w", c.addr, err)
		}
	}
	return nil
}

// abortSSH closes the current connection, ending whatever runs over it; the
// next call reconnects.
func (c *sshComm) abortSSH() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stale = true
	if c.conn != nil {
		c.conn.Close()
	}
}

func (c *sshComm) markStale() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stale = true
}

// ready returns the communicator to use, reconnecting first when the last
// connection dropped.
func (c *sshComm) ready(ctx context.Context) (packersdk.Communicator, error) {
	c.mu.Lock()
	inner, stale, closed := c.inner, c.stale, c.closed
	c.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("using the SSH connection to %s: it is closed", c.addr)
	}
	if !stale {
		return inner, nil
	}
	fmt.Fprintf(c.log, "the SSH connection to %s dropped; waiting for SSH to answer again\n", c.addr)
	return c.reconnect(ctx)
}

// reconnect waits until SSH answers and accepts the key, trying every
// sshRetryInterval until target.Timeout, and installs the new
// communicator.
func (c *sshComm) reconnect(ctx context.Context) (packersdk.Communicator, error) {
	c.connectMu.Lock()
	defer c.connectMu.Unlock()
	c.mu.Lock()
	if !c.stale && c.inner != nil {
		inner := c.inner // another call reconnected meanwhile
		c.mu.Unlock()
		return inner, nil
	}
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()

	start := time.Now()
	deadline := start.Add(c.target.Timeout)
	var last error
	lastLogged := ""
	for attempt := 1; ; attempt++ {
		inner, err := c.dialSSH(ctx, time.Until(deadline))
		if err == nil {
			c.mu.Lock()
			c.inner, c.stale = inner, false
			c.mu.Unlock()
			fmt.Fprintf(c.log, "connected to SSH on %s as %s after %s (attempt %d)\n",
				c.addr, c.target.User, time.Since(start).Round(time.Millisecond), attempt)
			return inner, nil
		}
		last = err
		if msg := sshLocalAddr.ReplaceAllString(err.Error(), ""); msg != lastLogged {
			fmt.Fprintf(c.log, "waiting for SSH on %s: %v\n", c.addr, err)
			lastLogged = msg
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for SSH on %s: %w (last attempt: %v)", c.addr, context.Cause(ctx), last)
		}
		wait := min(sshRetryInterval, time.Until(deadline))
		if wait <= 0 {
			break
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("waiting for SSH on %s: %w (last attempt: %v)", c.addr, context.Cause(ctx), last)
		case <-timer.C:
		}
		if !time.Now().Before(deadline) {
			break
		}
	}
	if errors.Is(last, errSSHAuth) {
		return nil, fmt.Errorf("waiting for SSH on %s timed out after %s: %w; check ssh_username (%q) and that the image installs the EC2 key pair for it (cloud-init)",
			c.addr, c.target.Timeout, last, c.target.User)
	}
	return nil, fmt.Errorf("waiting for SSH on %s timed out after %s: %w; check ssh_host/ssh_port, the security group and that the instance booted",
		c.addr, c.target.Timeout, last)
}

// sshLocalAddr matches the local address in a network error ("read tcp
// 10.0.0.5:51234->"), which changes at every attempt: without it the same
// failure would be logged every second.
var sshLocalAddr = regexp.MustCompile(`[0-9a-fA-F.:\[\]]+:\d+->`)

// errSSHAuth marks a refused login.
var errSSHAuth = errors.New("login refused")

// dialSSH makes one attempt: connect, handshake and log in, within
// remaining (but at least a second). ctx being done aborts it.
func (c *sshComm) dialSSH(ctx context.Context, remaining time.Duration) (packersdk.Communicator, error) {
	remaining = max(remaining, time.Second)
	dialTimeout := min(remaining, 10*time.Second)
	config := &packerssh.Config{
		SSHConfig: c.config,
		// Connection is also how the SDK reconnects on its own when a new
		// session cannot be opened; it records the connection so that
		// abortSSH and Close reach it.
		Connection: func() (net.Conn, error) {
			conn, err := net.DialTimeout("tcp", c.addr, dialTimeout)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			if c.conn != nil {
				c.conn.Close()
			}
			c.conn = conn
			closed := c.closed
			c.mu.Unlock()
			if closed {
				conn.Close()
				return nil, errors.New("the SSH communicator is closed")
			}
			return conn, nil
		},
		// The builder must not use the runner's ssh-agent.
		DisableAgentForwarding: true,
		HandshakeTimeout:       min(remaining, time.Minute),
		KeepAliveInterval:      sshKeepAlive,
		UseSftp:                true,
	}
	// Abort a dial or handshake in progress when ctx is done.
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.conn != nil {
			c.conn.Close()
		}
	})
	defer stop()
	comm, err := packerssh.New(c.addr, config)
	if err != nil {
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("logging in as %q with the key pair: %w: %w", c.target.User, errSSHAuth, err)
		}
		return nil, err
	}
	return comm, nil
}
