package podrunner

import "syscall"

// childAttr puts a container in its own process group (so a stop reaches its children too)
// and makes it die with the runner even if the runner is killed hard.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
