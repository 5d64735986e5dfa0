package testsvc

import "syscall"

// sysProcAttr runs the service as cred (nil: as the test user) and asks the
// kernel to stop it if the test process dies first. Pdeathsig is set after
// the credentials change in the child, so the switch does not clear it.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM}
}
