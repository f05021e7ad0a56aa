//go:build !linux

package testenv

import "syscall"

// sysProcAttr has no parent-death signal outside Linux; t.Cleanup still
// stops the servers when tests end normally.
func sysProcAttr() *syscall.SysProcAttr { return nil }
