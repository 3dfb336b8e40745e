//go:build unix && !linux

package podrunner

import "syscall"

// childAttr puts a container in its own process group (so a stop reaches its children too).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
