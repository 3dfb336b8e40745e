//go:build !linux

package sandbox

import "syscall"

// pdeathsig is Linux-only; elsewhere Stop is the only way children end.
func pdeathsig() *syscall.SysProcAttr { return nil }
