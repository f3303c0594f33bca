//go:build !linux

package mototest

import (
	"os"
	"os/exec"
)

// setProcessGroup does nothing outside Linux: moto_server (without -r) starts
// no child processes, so signalling it alone stops it.
func setProcessGroup(*exec.Cmd) {}

// terminate asks cmd to exit.
func terminate(cmd *exec.Cmd) { _ = cmd.Process.Signal(os.Interrupt) }

// kill ends cmd.
func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
