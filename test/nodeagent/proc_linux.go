package nodeagent

import "syscall"

// processAttr puts a container's process in its own process group (so stopping reaches its
// children too) and makes it die with the agent even if the agent is killed hard.
func processAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
