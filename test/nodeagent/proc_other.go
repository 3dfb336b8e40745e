//go:build !linux

package nodeagent

import "syscall"

// processAttr puts a container's process in its own process group (so stopping reaches its
// children too).
func processAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
