package influxtest

import "syscall"

// sysProcAttr makes the kernel kill influxd when the test process dies,
// so that a test killed by its timeout leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
