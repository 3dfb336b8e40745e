//go:build !linux

package testutil

import "syscall"

// ChildProcAttr is the child process attributes; only Linux can tie a child's life to its
// parent's.
func ChildProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
