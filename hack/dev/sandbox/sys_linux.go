package sandbox

import "syscall"

// pdeathsig makes a child die with the sandbox even if the sandbox is killed hard.
func pdeathsig() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
