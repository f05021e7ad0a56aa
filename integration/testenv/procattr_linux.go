package testenv

import "syscall"

// sysProcAttr makes the kernel kill a server when the test binary dies, even
// by SIGKILL or a test timeout, where no t.Cleanup runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
