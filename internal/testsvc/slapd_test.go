package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func ldapsearch(t *testing.T, s *Slapd, base string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("ldapsearch", append([]string{"-x", "-LLL", "-H", s.URL, "-D", s.AdminDN, "-w", s.AdminPassword, "-b", base}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSlapdStartStopRestart(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	if _, err := exec.LookPath("ldapsearch"); err != nil {
		t.Fatalf("ldap-utils missing: %v", err)
	}
	out, err := ldapsearch(t, s, s.BaseDN, "(objectClass=organizationalUnit)", "ou")
	if err != nil || !strings.Contains(out, "dn: "+s.PeopleDN) {
		t.Fatalf("seeded entries not found: %v\n%s", err, out)
	}
	out, err = ldapsearch(t, s, s.AccessLogDN, "-s", "base", "(objectClass=*)")
	if err != nil || !strings.Contains(out, "dn: cn=accesslog") {
		t.Fatalf("access log database not readable by admin: %v\n%s", err, out)
	}
	pid := s.PID()
	if pid == 0 || !s.Running() {
		t.Fatal("slapd not reported running")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() || s.PID() != 0 {
		t.Fatal("slapd still reported running after Stop")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Fatalf("process %d still exists after Stop", pid)
	}
	if _, err := ldapsearch(t, s, s.BaseDN, "-s", "base"); err == nil {
		t.Fatal("search succeeded while slapd was stopped")
	}
	if err := s.Stop(); err != nil { // double stop is a no-op
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil { // start while running is a no-op
		t.Fatal(err)
	}
	out, err = ldapsearch(t, s, s.PeopleDN, "-s", "base")
	if err != nil || !strings.Contains(out, s.PeopleDN) {
		t.Fatalf("data lost across restart: %v\n%s", err, out)
	}
}

func TestSlapdClosedRemovesDirectory(t *testing.T) {
	t.Parallel()
	s, err := NewSlapd()
	if err != nil {
		msg, fail := SkipOrFail(err)
		if fail {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s not removed: %v", s.Dir, err)
	}
}

func TestSlapdMissingBinary(t *testing.T) {
	old := SlapdPath
	SlapdPath = "/nonexistent/slapd"
	defer func() { SlapdPath = old }()
	_, err := NewSlapd()
	if err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("want ErrSlapdNotInstalled, got %v", err)
	}
	t.Setenv(EnvFull, "1")
	if _, fail := SkipOrFail(err); !fail {
		t.Fatal("UMBRA_FULL=1 must make a missing slapd a failure")
	}
	t.Setenv(EnvFull, "")
	if msg, fail := SkipOrFail(err); fail || !strings.Contains(msg, "skipping") {
		t.Fatalf("without UMBRA_FULL a missing slapd must skip, got %q %v", msg, fail)
	}
}

func TestSlapdRestartOnTakenPort(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)))
	if err != nil {
		t.Skipf("port %d was taken by someone else meanwhile: %v", s.Port, err)
	}
	err = s.Start()
	l.Close()
	if err == nil {
		t.Fatal("Start succeeded on a taken port")
	}
	if !strings.Contains(err.Error(), "Address already in use") || !strings.Contains(s.Log(), "bind") {
		t.Fatalf("Start error %q should carry slapd's complaint; log %q", err, s.Log())
	}
	if s.Running() {
		t.Fatal("slapd reported running after a failed start")
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start after the port was freed: %v", err)
	}
}

// recordingTB records Skipf and Fatalf and ends its goroutine, as the
// real ones do.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()        {}
func (r *recordingTB) Cleanup(func()) {}
func (r *recordingTB) Skipf(f string, args ...any) {
	r.skipped = fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(f string, args ...any) {
	r.failed = fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (r *recordingTB) Fatal(args ...any) {
	r.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

// startRecorded runs StartSlapd on a recordingTB in its own goroutine.
func startRecorded(t *testing.T) *recordingTB {
	r := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s := StartSlapd(r); s != nil {
			s.Close()
		}
	}()
	<-done
	return r
}

func TestStartSlapdWithoutSlapd(t *testing.T) {
	old := SlapaddPath
	SlapaddPath = "/nonexistent/slapadd"
	defer func() { SlapaddPath = old }()
	t.Setenv(EnvFull, "")
	r := startRecorded(t)
	if !strings.Contains(r.skipped, "not installed") || !strings.Contains(r.skipped, EnvFull) || r.failed != "" {
		t.Fatalf("want a skip naming the missing binary and %s, got skip %q fail %q", EnvFull, r.skipped, r.failed)
	}
	t.Setenv(EnvFull, "1")
	r = startRecorded(t)
	if !strings.Contains(r.failed, "not installed") || r.skipped != "" {
		t.Fatalf("with %s=1 want a failure, got skip %q fail %q", EnvFull, r.skipped, r.failed)
	}
}

func TestSlapdTLS(t *testing.T) {
	t.Parallel()
	s := StartSlapdWith(t, SlapdOptions{TLS: true})
	if s.LDAPSURL == "" || s.CAFile == "" {
		t.Fatalf("TLS fields empty: %+v", s)
	}
	for _, args := range [][]string{{"-H", s.LDAPSURL}, {"-H", s.URL, "-ZZ"}} {
		cmd := exec.Command("ldapsearch", append(args, "-x", "-LLL", "-D", s.AdminDN, "-w", s.AdminPassword, "-b", s.PeopleDN, "-s", "base")...)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+s.CAFile, "LDAPTLS_REQCERT=demand")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), s.PeopleDN) {
			t.Fatalf("ldapsearch %v: %v\n%s\n%s", args, err, out, s.Log())
		}
	}
}

func TestSlapdBuildFailure(t *testing.T) {
	old := SlapaddPath
	SlapaddPath = "/bin/false"
	defer func() { SlapaddPath = old }()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // NewSlapd creates its directory here
	_, err := NewSlapd()
	if err == nil || !strings.Contains(err.Error(), "slapadd -n0") {
		t.Fatalf("NewSlapd with a failing slapadd: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "umbra-slapd-*")); len(left) != 0 {
		t.Fatalf("directories left behind: %v", left)
	}
}
