package sshtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// setProcAttr puts sshd in a process group of its own and asks the kernel
// to kill it when the thread that started it (and so the test binary) goes
// away.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killTree kills sshd (pid), the processes below it, and every process
// whose environment holds marker. sshd puts each connection and each
// session in a session of its own, so neither the process group nor the
// parent chain reaches a command whose connection already dropped; the
// marker (set by sshd_config's SetEnv) does.
func killTree(p *os.Process, marker string) {
	pid := p.Pid
	below := descendants(pid)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, child := range below {
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
	// Twice: a shell may have forked between the scan and the kill.
	for range 2 {
		for _, session := range withEnv(marker) {
			_ = syscall.Kill(session, syscall.SIGKILL)
		}
	}
}

// procs returns the pids in /proc.
func procs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// descendants returns the pids whose parent chain reaches root.
func descendants(root int) []int {
	children := map[int][]int{}
	for _, pid := range procs() {
		if ppid, ok := parentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, err := strconv.Atoi(strings.TrimSpace(v))
			return ppid, err == nil
		}
	}
	return 0, false
}

// withEnv returns the pids whose environment holds the entry kv.
func withEnv(kv string) []int {
	var out []int
	for _, pid := range procs() {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if err != nil {
			continue
		}
		for _, e := range bytes.Split(b, []byte{0}) {
			if string(e) == kv {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
