//go:build !linux

package testsvc

import "syscall"

// sysProcAttr runs the service as cred (nil: as the test user).
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
