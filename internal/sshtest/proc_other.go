//go:build !linux

package sshtest

import (
	"os"
	"os/exec"
)

// setProcAttr does nothing outside Linux.
func setProcAttr(*exec.Cmd) {}

// killTree kills sshd. Outside Linux there is no /proc to find the
// processes sshd started; they end when their connections and commands do.
func killTree(p *os.Process, _ string) { _ = p.Kill() }
