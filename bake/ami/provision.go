package ami

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/bakery-sh/bakery/internal/redact"
	"github.com/bakery-sh/bakery/recipes"
)

// provTailLines is how many of the last output lines a failed shell
// provisioner's error shows.
const provTailLines = 20

// provAbortWait bounds how long Provision waits, after ctx is done, for the
// aborted command or upload to wind down before it returns.
const provAbortWait = time.Second

// provAborter is implemented by the communicator ConnectSSH returns: it
// ends every transfer and command in flight by closing the connection.
type provAborter interface{ abortSSH() }

// Provision runs one provision block on the builder over comm, as Packer's
// file and shell provisioners do, writing what happens to out one line at
// a time, each prefixed with the block type ("  shell: ...").
//
// A file block uploads a file (with its permission bits) to Destination,
// or into it when Destination ends in "/"; a directory source ("dir/")
// has its contents uploaded into Destination, which is created when
// missing. A shell block uploads its inline commands (as a /bin/sh -e
// script) or its Script to /tmp/bakery-script-RANDOM.sh, runs it with Env
// exported, streams its output to out as it arrives, and removes it. The
// script's standard error is merged into its standard output on the
// builder (2>&1), so its lines reach out, and the last 20 lines that
// the error of a non-zero exit status quotes, in the order the script
// wrote them. With ExpectDisconnect a dropped connection (a reboot) is
// not an error.
//
// Every Env value is masked ("(sensitive value)") in what Provision writes to
// out and in its errors, and so is every secret of out when out is a
// *redact.Writer (as the Baker's output is, given WithSecrets).
//
// PauseBefore is waited first. When ctx is done Provision stops waiting,
// aborts the upload or the remote command (by closing the connection, when
// comm comes from ConnectSSH) and returns an error wrapping ctx.Err().
func Provision(ctx context.Context, comm packersdk.Communicator, p *recipes.Provisioner, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	if p.PauseBefore > 0 {
		fmt.Fprintf(out, "  %s: pausing %s before this provisioner (pause_before)\n", p.Type, p.PauseBefore)
		timer := time.NewTimer(p.PauseBefore)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s provisioner at %s: pausing before it: %w", p.Type, p.Pos("pause_before"), ctx.Err())
		case <-timer.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s provisioner at %s: %w", p.Type, p.Pos(""), err)
	}
	switch p.Type {
	case "file":
		return provFile(ctx, comm, p, out)
	case "shell":
		return provShell(ctx, comm, p, out)
	default:
		return fmt.Errorf("provisioner at %s: unknown type %q; use \"file\" or \"shell\"", p.Pos("type"), p.Type)
	}
}

// provFile runs a file provisioner.
func provFile(ctx context.Context, comm packersdk.Communicator, p *recipes.Provisioner, out io.Writer) error {
	pos := p.Pos("source")
	if p.SourcePath == "" || p.Destination == "" {
		return fmt.Errorf("file provisioner at %s: source and destination are both required", p.Pos(""))
	}
	dest := p.Destination
	if p.SourceIsDir {
		// Clean: the SDK's SFTP upload sets the destination's mode to the
		// source directory's unless the path is exactly the cleaned one.
		dest = path.Clean(dest)
		fmt.Fprintf(out, "  file: uploading the contents of %s to %s\n", p.Source, dest)
		mkdir := "mkdir -p -- " + provQuote(dest)
		if err := provRunQuiet(ctx, comm, mkdir); ctx.Err() != nil {
			return fmt.Errorf("file provisioner at %s: %w", pos, ctx.Err())
		} else if err != nil {
			return fmt.Errorf("file provisioner at %s: creating %s on the builder: %w; check that ssh_username may write there", pos, dest, err)
		}
		err := provAbortable(ctx, comm, func() error { return comm.UploadDir(dest, p.SourcePath+"/", nil) })
		if ctx.Err() != nil {
			return fmt.Errorf("file provisioner at %s: uploading the contents of %s: %w", pos, p.Source, ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("file provisioner at %s: uploading the contents of %s to %s: %w; check that ssh_username may write there",
				pos, p.Source, dest, err)
		}
		return nil
	}

	if strings.HasSuffix(dest, "/") {
		dest += filepath.Base(p.SourcePath)
	}
	f, err := os.Open(p.SourcePath)
	if err != nil {
		return fmt.Errorf("file provisioner at %s: reading the source: %w", pos, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("file provisioner at %s: reading the source: %w", pos, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("file provisioner at %s: %s is a directory; write it with a trailing \"/\" to upload its contents", pos, p.Source)
	}
	fmt.Fprintf(out, "  file: uploading %s to %s\n", p.Source, dest)
	err = provUpload(ctx, comm, dest, f, &fi)
	if ctx.Err() != nil {
		return fmt.Errorf("file provisioner at %s: uploading %s: %w", pos, p.Source, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("file provisioner at %s: uploading %s to %s: %w; check that the destination's directory exists on the builder and ssh_username may write it",
			pos, p.Source, dest, err)
	}
	return nil
}

// provShell runs a shell provisioner.
func provShell(ctx context.Context, comm packersdk.Communicator, p *recipes.Provisioner, out io.Writer) error {
	attr := "inline"
	if len(p.Inline) == 0 {
		attr = "script"
	}
	pos := p.Pos(attr)
	if len(p.Inline) == 0 && p.ScriptPath == "" {
		return fmt.Errorf("shell provisioner at %s: nothing to run; set inline or script", p.Pos(""))
	}
	exports, err := provExports(p.Env)
	if err != nil {
		return fmt.Errorf("shell provisioner at %s: %w", p.Pos("env"), err)
	}

	remote := "/tmp/bakery-script-" + provRandomHex(8) + ".sh"
	var run string
	if len(p.Inline) > 0 {
		script := "#!/bin/sh -e\n" + strings.Join(p.Inline, "\n") + "\n"
		err = provUpload(ctx, comm, remote, strings.NewReader(script), nil)
		run = "/bin/sh -e " + provQuote(remote)
	} else {
		var f *os.File
		if f, err = os.Open(p.ScriptPath); err != nil {
			return fmt.Errorf("shell provisioner at %s: reading the script: %w", pos, err)
		}
		defer f.Close()
		err = provUpload(ctx, comm, remote, f, nil)
		run = provQuote(remote)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("shell provisioner at %s: uploading the script: %w", pos, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("shell provisioner at %s: uploading the script to %s: %w; check that /tmp on the builder is writable", pos, remote, err)
	}
	// One command: export, run with stderr merged into stdout, remove the
	// script, keep the run's status. The merge is done by the remote
	// shell because only there is the order of the two streams known:
	// SSH carries them as separate streams of the session, copied to us
	// by separate goroutines, so a stderr line could arrive after stdout
	// lines written later and drop out of the failure's last lines.
	command := exports + "chmod +x " + provQuote(remote) + " && " + run + " 2>&1; s=$?; rm -f " + provQuote(remote) + "; exit $s"

	o := &provOutput{out: out, prefix: "  shell: ", secrets: provSecrets(p.Env, out)}
	stdout, stderr := o.stream(), o.stream()
	cmd := &packersdk.RemoteCmd{Command: command, Stdout: stdout, Stderr: stderr}
	if err := comm.Start(ctx, cmd); err != nil {
		o.close()
		return fmt.Errorf("shell provisioner at %s: starting the script: %w", pos, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		if a, ok := comm.(provAborter); ok {
			a.abortSSH()
		}
		select {
		case <-exited:
		case <-time.After(provAbortWait):
		}
		o.close()
		return fmt.Errorf("shell provisioner at %s: %w", pos, ctx.Err())
	}
	o.close()

	status := cmd.ExitStatus()
	switch {
	case status == 0:
		return nil
	case provDisconnected(status):
		if p.ExpectDisconnect {
			fmt.Fprintf(out, "  shell: the connection dropped, as expect_disconnect allows\n")
			return nil
		}
		return fmt.Errorf("shell provisioner at %s lost the SSH connection before the script ended%s"+
			"set expect_disconnect = true if the script reboots the builder, else check the builder's console output (--on-error abort keeps the builder to look at)",
			pos, o.tailText())
	case p.ExpectDisconnect && provKilledByReboot(status):
		fmt.Fprintf(out, "  shell: the script was killed (exit status %d) while the builder shut down, as expect_disconnect allows\n", status)
		return nil
	default:
		return fmt.Errorf("shell provisioner at %s failed with exit status %d%sfix the script and bake again (--on-error abort keeps the builder to log in to)",
			pos, status, o.tailText())
	}
}

// provDisconnected reports whether status says the connection dropped
// before the command's exit status arrived.
func provDisconnected(status int) bool { return status == packersdk.CmdDisconnect || status == -1 }

// provKilledByReboot reports whether status is that of a command killed by
// SIGHUP or SIGTERM, which a rebooting builder sends to its sessions.
func provKilledByReboot(status int) bool { return status == 128+1 || status == 128+15 }

// provAbortable runs f (an upload, which takes no context) and returns its
// error; when ctx is done first it aborts the transfer (with a
// communicator from ConnectSSH), waits a little for f to stop and returns
// ctx.Err().
func provAbortable(ctx context.Context, comm packersdk.Communicator, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if a, ok := comm.(provAborter); ok {
			a.abortSSH()
		}
		select {
		case <-done:
		case <-time.After(provAbortWait):
		}
		return ctx.Err()
	}
}

// provStaller is a communicator that knows how long an upload may move
// no data before it counts as stuck (the SSH timeout).
type provStaller interface{ stallTimeout() time.Duration }

// provUpload uploads in to path on the builder, aborting when ctx ends (see
// provAbortable). With a communicator from ConnectSSH it also watches the
// transfer: when no data moved for the SSH timeout (a channel that never
// opens, a session that stopped answering: it happens on loaded hosts),
// it resets the connection and uploads again from the start, once, and
// then gives up with an error instead of waiting forever.
func provUpload(ctx context.Context, comm packersdk.Communicator, path string, in io.ReadSeeker, fi *os.FileInfo) error {
	st, ok := comm.(provStaller)
	if !ok || st.stallTimeout() <= 0 {
		return provAbortable(ctx, comm, func() error { return comm.Upload(path, in, fi) })
	}
	stall := st.stallTimeout()
	for attempt := 1; ; attempt++ {
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rewinding the upload: %w", err)
		}
		w := &provWatched{r: in}
		w.touch()
		done := make(chan error, 1)
		go func() { done <- comm.Upload(path, w, fi) }()
		tick := time.NewTicker(min(stall/4, time.Second))
		err, stalled := provWatch(ctx, comm, done, tick.C, func() bool { return time.Since(w.last()) > stall })
		tick.Stop()
		switch {
		case !stalled:
			return err
		case attempt > 1:
			return fmt.Errorf("no data moved for %s, twice: the SSH connection to the builder stopped answering", stall)
		}
	}
}

// provWatch waits for done, aborting the connection when ctx ends (then
// it returns ctx.Err()) or when stuck reports true at a tick (then it
// returns stalled).
func provWatch(ctx context.Context, comm packersdk.Communicator, done <-chan error, tick <-chan time.Time, stuck func() bool) (err error, stalled bool) {
	abort := func() {
		if a, ok := comm.(provAborter); ok {
			a.abortSSH()
		}
		select {
		case <-done:
		case <-time.After(provAbortWait):
		}
	}
	for {
		select {
		case err := <-done:
			return err, false
		case <-ctx.Done():
			abort()
			return ctx.Err(), false
		case <-tick:
			if stuck() {
				abort()
				return nil, true
			}
		}
	}
}

// provWatched is a reader that remembers when it was last read.
type provWatched struct {
	r  io.Reader
	at atomic.Int64 // unix nanoseconds of the last read
}

func (w *provWatched) touch()          { w.at.Store(time.Now().UnixNano()) }
func (w *provWatched) last() time.Time { return time.Unix(0, w.at.Load()) }

func (w *provWatched) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.touch()
	return n, err
}

// provRunQuiet runs command, returning an error with its output when it
// fails.
func provRunQuiet(ctx context.Context, comm packersdk.Communicator, command string) error {
	o := &provOutput{out: io.Discard}
	cmd := &packersdk.RemoteCmd{Command: command, Stdout: o.stream(), Stderr: o.stream()}
	if err := comm.Start(ctx, cmd); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		o.close()
		return ctx.Err()
	}
	o.close()
	if status := cmd.ExitStatus(); status != 0 {
		tail := strings.TrimSuffix(strings.TrimSuffix(o.tailText(), "; "), "\n")
		return fmt.Errorf("%s failed with exit status %d%s", command, status, tail)
	}
	return nil
}

// provExports returns "export K='v' ...; " for env, sorted by name, or ""
// for no env.
func provExports(env map[string]string) (string, error) {
	if len(env) == 0 {
		return "", nil
	}
	names := make([]string, 0, len(env))
	for k := range env {
		if !provValidName(k) {
			return "", fmt.Errorf("env name %q is not a shell variable name; use letters, digits and _, not starting with a digit", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("export")
	for _, k := range names {
		b.WriteString(" " + k + "=" + provQuote(env[k]))
	}
	b.WriteString("; ")
	return b.String(), nil
}

// Secrets returns what a bake of r must never print: the values of r's
// sensitive variables (recipes.Recipe.SensitiveValues), every env value
// of every shell provisioner (all are treated as secret), and the export
// statement that carries them on the remote command line, which
// packer-plugin-sdk's SSH communicator logs ("[DEBUG] starting remote
// command: ..."): there even a value shorter than redact.MinLen is hidden.
// Mask them in logs with a redact.Writer; give them to the Baker with
// WithSecrets.
func Secrets(r *recipes.Recipe) []string {
	out := r.SensitiveValues()
	for _, m := range r.MachineImages {
		for _, p := range m.Provisioners {
			out = append(out, provSecrets(p.Env, nil)...)
		}
	}
	return out
}

// provSecrets returns the values of env and the export statement
// provExports makes of them (without its "; "), followed by the secrets
// of out when it is a *redact.Writer.
func provSecrets(env map[string]string, out io.Writer) []string {
	var secrets []string
	if exports, err := provExports(env); err == nil && exports != "" {
		secrets = append(secrets, strings.TrimSuffix(exports, "; "))
	}
	for _, v := range env {
		secrets = append(secrets, v)
	}
	if rw, ok := out.(*redact.Writer); ok {
		secrets = append(secrets, rw.Secrets()...)
	}
	return secrets
}

func provValidName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// provQuote single-quotes s for a POSIX shell.
func provQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

func provRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// provOutput turns a remote command's stdout and stderr into prefixed
// lines on out, and keeps the last provTailLines non-blank ones for the
// error message. Writes never fail, so a slow or broken out cannot stall
// the SSH session; after close they are dropped.
type provOutput struct {
	out    io.Writer
	prefix string
	// secrets are masked in every line, before it is written or kept.
	secrets []string

	mu      sync.Mutex
	tail    []string
	streams []*provStream
	closed  bool
}

// provStream is one of the command's outputs: it holds a partial line.
type provStream struct {
	o       *provOutput
	partial []byte
}

func (o *provOutput) stream() *provStream {
	s := &provStream{o: o}
	o.mu.Lock()
	o.streams = append(o.streams, s)
	o.mu.Unlock()
	return s
}

// Write emits every complete line in p and holds the rest.
func (s *provStream) Write(p []byte) (int, error) {
	o := s.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return len(p), nil
	}
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		o.emit(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	return len(p), nil
}

// close emits the partial lines and drops later writes.
func (o *provOutput) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	for _, s := range o.streams {
		if len(s.partial) > 0 {
			o.emit(string(s.partial))
			s.partial = nil
		}
	}
	o.closed = true
}

// emit writes one line; o.mu is held.
func (o *provOutput) emit(line string) {
	// As Packer: drop trailing space, and what a carriage return overwrote.
	line = strings.TrimRightFunc(line, unicode.IsSpace)
	if i := strings.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	line = redact.Mask(line, o.secrets)
	_, _ = io.WriteString(o.out, o.prefix+line+"\n")
	if strings.TrimSpace(line) == "" {
		return
	}
	o.tail = append(o.tail, line)
	if len(o.tail) > provTailLines {
		o.tail = o.tail[len(o.tail)-provTailLines:]
	}
}

// tailText is the part of an error message between what failed and what
// to do: ": last N lines of output:\n  LINE\n...\n", or " (no output); ".
func (o *provOutput) tailText() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == 0 {
		return " (no output); "
	}
	var b strings.Builder
	if len(o.tail) == 1 {
		b.WriteString(": last line of output:\n")
	} else {
		fmt.Fprintf(&b, ": last %d lines of output:\n", len(o.tail))
	}
	for _, l := range o.tail {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
