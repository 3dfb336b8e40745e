package testutil

import "syscall"

// ChildProcAttr makes a child process die with the test (or sandbox) that started it, even
// when that is killed hard, so no server outlives it.
func ChildProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
