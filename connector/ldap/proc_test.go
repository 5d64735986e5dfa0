package ldap

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// stopProcess suspends (SIGSTOP) or resumes (SIGCONT) the process pid, a
// child of this test: a hung server, for timeout tests. Suspending waits
// until the kernel reports the process stopped, since the signal is
// delivered asynchronously.
func stopProcess(pid int, stop bool) error {
	if pid == 0 {
		return nil
	}
	if !stop {
		return syscall.Kill(pid, syscall.SIGCONT)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return err
		}
		// The state follows the command name in parentheses.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 && (stat[i+2] == 'T' || stat[i+2] == 't') {
			return nil
		}
	}
	return fmt.Errorf("process %d not stopped after 5s", pid)
}
