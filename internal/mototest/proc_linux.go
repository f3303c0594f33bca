package mototest

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts moto_server in a process group of its own, so stopping
// it reaches anything it spawned, and asks the kernel to kill it when the
// thread that started it (and so the test binary) goes away.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// terminate asks the process group of cmd to exit.
func terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// kill ends the process group of cmd.
func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
