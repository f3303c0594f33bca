package ami_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// provClosedPort returns a loopback port nothing listens on.
func provClosedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestConnectSSHTimesOutOnAClosedPort(t *testing.T) {
	t.Parallel()
	key, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	port := provClosedPort(t)
	var log bytes.Buffer
	start := time.Now()
	_, err = ami.ConnectSSH(context.Background(), ami.SSHTarget{
		Host: "127.0.0.1", Port: port, User: "ec2-user", Key: key, Timeout: 2 * time.Second,
	}, &log)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("ConnectSSH to a closed port succeeded")
	}
	want := fmt.Sprintf("waiting for SSH on 127.0.0.1:%d timed out after 2s: ", port)
	for _, w := range []string{want, "connection refused", "; check ssh_host/ssh_port, the security group and that the instance booted"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	// It gave up on its own timeout, not on a context, and only once that
	// had passed.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the SSH timeout, not a context error", err)
	}
	if elapsed < 2*time.Second {
		t.Errorf("ConnectSSH gave up after %s, before its 2s timeout", elapsed)
	}
	if !strings.Contains(log.String(), "waiting for SSH on 127.0.0.1:") {
		t.Errorf("log = %q, want the failed attempt", log.String())
	}
}

func TestConnectSSHStopsWhenTheContextIsCancelled(t *testing.T) {
	t.Parallel()
	key, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = ami.ConnectSSH(ctx, ami.SSHTarget{
		Host: "127.0.0.1", Port: provClosedPort(t), User: "ec2-user", Key: key, Timeout: time.Hour,
	}, nil)
	// With an hour's SSH timeout, returning at all means the context
	// stopped it; the error says so, and is not the SSH timeout's.
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if err != nil && (strings.Contains(err.Error(), "timed out after") || !strings.Contains(err.Error(), "waiting for SSH on 127.0.0.1:")) {
		t.Errorf("err = %v, want it to name the wait the context ended", err)
	}
	if ctx.Err() == nil {
		t.Errorf("ConnectSSH returned %v before its context ended", err)
	}
}

func TestConnectSSHWithAWrongKeyNamesTheUser(t *testing.T) {
	t.Parallel()
	good, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	srv := sshtest.Start(t, sshtest.WithAuthorizedKeys(good.Signer.PublicKey()))
	_, err = ami.ConnectSSH(context.Background(), ami.SSHTarget{
		Host: srv.Host, Port: srv.Port, User: srv.User, Key: wrong, Timeout: 2 * time.Second,
	}, nil)
	if err == nil {
		t.Fatal("ConnectSSH with a key sshd does not accept succeeded")
	}
	for _, w := range []string{
		fmt.Sprintf("waiting for SSH on %s timed out after 2s", srv.Addr()),
		fmt.Sprintf("logging in as %q", srv.User),
		"unable to authenticate",
		"check ssh_username",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func TestConnectSSHWaitsForTheKeyToBeInstalled(t *testing.T) {
	t.Parallel()
	key, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	// As on a fresh instance: sshd answers before cloud-init installs the key.
	srv := sshtest.Start(t)
	time.AfterFunc(1500*time.Millisecond, func() { srv.AuthorizeKey(key.Signer.PublicKey()) })
	var log bytes.Buffer
	comm, err := ami.ConnectSSH(context.Background(), ami.SSHTarget{
		Host: srv.Host, Port: srv.Port, User: srv.User, Key: key, Timeout: 10 * time.Second,
	}, &log)
	if err != nil {
		t.Fatalf("ConnectSSH: %v", err)
	}
	comm.(interface{ Close() error }).Close()
	if !strings.Contains(log.String(), "unable to authenticate") || !strings.Contains(log.String(), "connected to SSH on "+srv.Addr()) {
		t.Errorf("log = %q, want a refused login, then the connection", log.String())
	}
}

func TestConnectSSHValidatesTheTarget(t *testing.T) {
	t.Parallel()
	key, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target ami.SSHTarget
		want   string
	}{
		{ami.SSHTarget{User: "u", Key: key}, "no host"},
		{ami.SSHTarget{Host: "h", Key: key}, "no user; set ssh_username"},
		{ami.SSHTarget{Host: "h", User: "u"}, "no key"},
	} {
		if _, err := ami.ConnectSSH(context.Background(), tc.target, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ConnectSSH(%+v) = %v, want %q", tc.target, err, tc.want)
		}
	}
}
