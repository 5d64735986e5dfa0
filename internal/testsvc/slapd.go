package testsvc

// slapd: StartSlapd (or NewSlapd in a TestMain) builds a throwaway OpenLDAP
// slapd with its own cn=config. Services are started as direct children of
// the test process and stopped by process ID (SIGTERM, then Wait), never by
// a broad kill. When the binaries are missing, StartSlapd skips the test
// with a clear message, or fails it when UMBRA_FULL is "1" (EnvFull).

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The slapd binaries the harness runs. Variables so that a test on an
// unusual layout can point elsewhere before starting anything.
var (
	SlapdPath   = "/usr/sbin/slapd"
	SlapaddPath = "/usr/sbin/slapadd"
)

// ErrSlapdNotInstalled is returned by NewSlapd when slapd or slapadd is not
// installed (Debian packages slapd and ldap-utils).
var ErrSlapdNotInstalled = errors.New("testsvc: slapd is not installed (apt-get install slapd ldap-utils)")

//go:embed slapd-config.ldif.in
var slapdConfigTemplate string

//go:embed slapd-base.ldif
var slapdBaseLDIF string

// The fixed names of every test directory.
const (
	// SlapdBaseDN is the suffix of the main database.
	SlapdBaseDN = "dc=example,dc=com"
	// SlapdPeopleDN is the organizational unit seeded under the suffix.
	SlapdPeopleDN = "ou=people,dc=example,dc=com"
	// SlapdAdminDN is the root DN of the main database; it may also read
	// cn=accesslog.
	SlapdAdminDN = "cn=admin,dc=example,dc=com"
	// SlapdAccessLogDN is the suffix of the access log database.
	SlapdAccessLogDN = "cn=accesslog"
)

// Slapd is a running (or stopped) test slapd: an mdb database for
// dc=example,dc=com holding dc=example,dc=com and ou=people, an access log
// database cn=accesslog fed by the accesslog overlay (successful writes, with
// reqOld), and syncprov on both. Both databases run with olcDbNoSync and a
// 1 GiB olcDbMaxSize.
//
// Methods are safe for concurrent use.
type Slapd struct {
	// URL is the ldap:// URL of the listener on 127.0.0.1.
	URL string
	// Port is the TCP port; Start reuses it.
	Port int
	// AdminDN and AdminPassword bind as the root DN of the main database.
	// The password is random for each instance.
	AdminDN, AdminPassword string
	// BaseDN is the suffix (dc=example,dc=com); PeopleDN is ou=people under
	// it; AccessLogDN is cn=accesslog.
	BaseDN, PeopleDN, AccessLogDN string
	// Dir is the instance directory (config, databases, log).
	Dir string
	// LDAPSURL is the ldaps:// URL of the TLS listener and CAFile the PEM
	// file of the certificate authority that signed the server's
	// certificate (for 127.0.0.1 and localhost); both empty without
	// SlapdOptions.TLS. StartTLS works on URL too.
	LDAPSURL, CAFile string
	// TLSPort is the port of LDAPSURL.
	TLSPort int

	opts SlapdOptions

	mu   sync.Mutex
	run  *slapdRun // nil when stopped
	cred *syscall.Credential
}

// slapdRun is one slapd process.
type slapdRun struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when Wait returned
	waitErr error         // set before exited is closed
}

// SlapdOptions select optional features of a test slapd.
type SlapdOptions struct {
	// TLS adds an ldaps:// listener and StartTLS, with a certificate from
	// a throwaway certificate authority (Slapd.CAFile).
	TLS bool
}

// StartSlapd starts a fresh slapd for t and stops and removes it when the
// test ends. Without slapd installed it skips t, or fails it when UMBRA_FULL=1.
// Any other start failure fails t.
func StartSlapd(t testing.TB) *Slapd {
	t.Helper()
	return StartSlapdWith(t, SlapdOptions{})
}

// StartSlapdWith is StartSlapd with options.
func StartSlapdWith(t testing.TB, opts SlapdOptions) *Slapd {
	t.Helper()
	s, err := NewSlapdWith(opts)
	if errors.Is(err, ErrSlapdNotInstalled) {
		if os.Getenv(EnvFull) == "1" {
			t.Fatalf("%v; %s=1 requires it", err, EnvFull)
		}
		t.Skipf("%v; skipping (set %s=1 to make this a failure)", err, EnvFull)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stopping slapd: %v", err)
		}
	})
	return s
}

// SkipOrFail is for a TestMain that got ErrSlapdNotInstalled from NewSlapd:
// it returns the message to print and whether the package's tests should
// fail (UMBRA_FULL=1) rather than be skipped.
func SkipOrFail(err error) (msg string, fail bool) {
	if os.Getenv(EnvFull) == "1" {
		return fmt.Sprintf("%v; %s=1 requires it", err, EnvFull), true
	}
	return fmt.Sprintf("%v; skipping (set %s=1 to make this a failure)", err, EnvFull), false
}

// NewSlapd builds a fresh instance in a new temporary directory and starts
// it on a free loopback port. The caller MUST call Close. It returns an error
// wrapping ErrSlapdNotInstalled when the binaries are missing.
func NewSlapd() (*Slapd, error) { return NewSlapdWith(SlapdOptions{}) }

// NewSlapdWith is NewSlapd with options.
func NewSlapdWith(opts SlapdOptions) (*Slapd, error) {
	for _, p := range []string{SlapdPath, SlapaddPath} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSlapdNotInstalled, p, err)
		}
	}
	pw, err := randomHex(12)
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parents are 0700 and owned by the test user, so
	// slapd running as openldap could not reach the directory.
	dir, err := os.MkdirTemp("", "umbra-slapd-")
	if err != nil {
		return nil, fmt.Errorf("testsvc: creating slapd directory: %w", err)
	}
	s := &Slapd{
		AdminDN: SlapdAdminDN, AdminPassword: pw,
		BaseDN: SlapdBaseDN, PeopleDN: SlapdPeopleDN, AccessLogDN: SlapdAccessLogDN,
		Dir: dir, opts: opts,
	}
	if err := s.build(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A free port can be taken between the probe and slapd's bind; retry
	// with another one when slapd exits at once.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.Port = port
		s.URL = fmt.Sprintf("ldap://127.0.0.1:%d/", port)
		if opts.TLS {
			if s.TLSPort, err = freePort(); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d/", s.TLSPort)
		}
		err = s.Start()
		if err == nil {
			return s, nil
		}
		if attempt == 2 || !strings.Contains(err.Error(), "Address already in use") {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// build writes cn=config from the template, loads it and the base entries
// offline with slapadd, and hands the directory to openldap when running as
// root (slapd drops to that user before it reads its configuration).
func (s *Slapd) build() error {
	for _, sub := range []string{"slapd.d", "data", "accesslog", "run"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, sub), 0o755); err != nil {
			return fmt.Errorf("testsvc: %w", err)
		}
	}
	tlsAttrs := ""
	if s.opts.TLS {
		if err := writeTLSFiles(s.Dir); err != nil {
			return err
		}
		s.CAFile = filepath.Join(s.Dir, "tls", "ca.pem")
		tlsAttrs = fmt.Sprintf("olcTLSCACertificateFile: %s\nolcTLSCertificateFile: %s\nolcTLSCertificateKeyFile: %s\n",
			s.CAFile, filepath.Join(s.Dir, "tls", "server.pem"), filepath.Join(s.Dir, "tls", "server.key"))
	}
	conf := strings.NewReplacer("@DIR@", s.Dir, "@ADMINPW@", s.AdminPassword, "@TLS@", tlsAttrs).Replace(slapdConfigTemplate)
	confPath := filepath.Join(s.Dir, "config.ldif")
	basePath := filepath.Join(s.Dir, "base.ldif")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("testsvc: %w", err)
	}
	if err := os.WriteFile(basePath, []byte(slapdBaseLDIF), 0o600); err != nil {
		return fmt.Errorf("testsvc: %w", err)
	}
	if out, err := exec.Command(SlapaddPath, "-n0", "-F", filepath.Join(s.Dir, "slapd.d"), "-l", confPath).CombinedOutput(); err != nil {
		return fmt.Errorf("testsvc: slapadd -n0 (cn=config): %w: %s", err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command(SlapaddPath, "-F", filepath.Join(s.Dir, "slapd.d"), "-b", s.BaseDN, "-l", basePath).CombinedOutput(); err != nil {
		return fmt.Errorf("testsvc: slapadd (base entries): %w: %s", err, bytes.TrimSpace(out))
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("openldap")
	if err != nil {
		return nil // no such user: slapd runs as root, which also works
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(s.Dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("testsvc: chown slapd directory to openldap: %w", err)
	}
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

// Start starts slapd on s.Port and waits until it answers. It is a no-op when
// slapd is running. After Stop it restarts the same instance (same data,
// same port), which is how tests simulate an outage and a recovery.
func (s *Slapd) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		return nil
	}
	logPath := filepath.Join(s.Dir, "run", "slapd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testsvc: %w", err)
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, 2)
	// -d none keeps slapd in the foreground (so cmd.Process is slapd) and
	// still prints real errors; -d 0 would hide them.
	urls := s.URL
	if s.LDAPSURL != "" {
		urls += " " + s.LDAPSURL
	}
	cmd := exec.Command(SlapdPath, "-d", "none", "-h", urls, "-F", filepath.Join(s.Dir, "slapd.d"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr(s.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testsvc: starting slapd: %w", err)
	}
	run := &slapdRun{cmd: cmd, exited: make(chan struct{})}
	s.run = run
	go func() {
		run.waitErr = cmd.Wait()
		close(run.exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-run.exited:
			s.run = nil
			return fmt.Errorf("testsvc: slapd exited during start (%v): %s", run.waitErr, s.logSince(offset))
		default:
		}
		// slapd writes its pid file once its listeners are bound: a server
		// answering before that is another process on the port.
		if s.pidFileIs(cmd.Process.Pid) && ready(s.Port) {
			select {
			case <-run.exited:
				s.run = nil
				return fmt.Errorf("testsvc: slapd exited during start (%v): %s", run.waitErr, s.logSince(offset))
			default:
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("testsvc: slapd not ready after 15s: %s", s.logSince(offset))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pidFileIs reports whether slapd's pid file names pid.
func (s *Slapd) pidFileIs(pid int) bool {
	b, err := os.ReadFile(filepath.Join(s.Dir, "run", "slapd.pid"))
	return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid)
}

// ready reports whether an LDAP server answers an anonymous bind on port.
func ready(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	// BindRequest, message ID 1, version 3, empty name, simple empty password.
	bind := []byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00}
	if _, err := c.Write(bind); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	// A BindResponse is APPLICATION 1 (0x61) inside the LDAPMessage.
	return err == nil && n > 7 && bytes.Contains(buf[:n], []byte{0x61})
}

// Stop stops slapd by its process ID (SIGTERM, then Wait; SIGKILL after 10
// seconds) and keeps its data. It is a no-op when slapd is not running.
func (s *Slapd) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Slapd) stopLocked() error {
	run := s.run
	if run == nil {
		return nil
	}
	s.run = nil
	_ = run.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-run.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = run.cmd.Process.Kill()
		<-run.exited
		return fmt.Errorf("testsvc: slapd (pid %d) ignored SIGTERM for 10s and was killed", run.cmd.Process.Pid)
	}
}

// Running reports whether slapd is running.
func (s *Slapd) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.run != nil
}

// PID returns the process ID of the running slapd, or 0.
func (s *Slapd) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return 0
	}
	return s.run.cmd.Process.Pid
}

// Close stops slapd and removes its directory.
func (s *Slapd) Close() error {
	err := s.Stop()
	return errors.Join(err, os.RemoveAll(s.Dir))
}

// Log returns what slapd wrote to stderr so far (real errors only, such as
// MDB_MAP_FULL; -d none hides operations).
func (s *Slapd) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "run", "slapd.log"))
	return string(b)
}

func (s *Slapd) logSince(offset int64) string {
	l := s.Log()
	if int(offset) <= len(l) {
		l = l[offset:]
	}
	return strings.TrimSpace(l)
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testsvc: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("testsvc: %w", err)
	}
	return hex.EncodeToString(b), nil
}
