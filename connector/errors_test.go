package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

var allCategories = []Category{CategoryGeneric, CategoryNotSent, CategoryOutcomeUnknown, CategoryThrottled,
	CategoryAlreadyExists, CategoryNotFound, CategorySchema, CategoryConfiguration, CategoryPolicy, CategoryPermission}

var allSentinels = []error{ErrGeneric, ErrNotSent, ErrOutcomeUnknown, ErrThrottled, ErrAlreadyExists,
	ErrNotFound, ErrSchema, ErrConfiguration, ErrPolicy, ErrPermission}

func TestErrorIsEverySentinel(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	for i, c := range allCategories {
		err := NewError(c, "add", cause)
		for j, s := range allSentinels {
			if got := errors.Is(err, s); got != (i == j) {
				t.Errorf("errors.Is(%s error, %v) = %v", c, s, got)
			}
		}
		if got := errors.Is(err, ErrCommunication); got != c.Communication() {
			t.Errorf("errors.Is(%s error, ErrCommunication) = %v", c, got)
		}
		if !errors.Is(err, cause) {
			t.Errorf("%s error does not unwrap to its cause", c)
		}
		// Through a wrapping fmt.Errorf too.
		wrapped := fmt.Errorf("context: %w", err)
		if !errors.Is(wrapped, c.Sentinel()) || Classify(wrapped) != c {
			t.Errorf("wrapped %s error: Is %v, Classify %s", c, errors.Is(wrapped, c.Sentinel()), Classify(wrapped))
		}
		if c.Sentinel() != allSentinels[i] {
			t.Errorf("%s.Sentinel() = %v", c, c.Sentinel())
		}
	}
	if Category(200).Sentinel() != ErrGeneric {
		t.Error("an unknown category's sentinel is not ErrGeneric")
	}
}

func TestCategoryString(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range allCategories {
		s := c.String()
		if s == "" || seen[s] || strings.HasPrefix(s, "Category(") {
			t.Errorf("category %d has name %q", c, s)
		}
		seen[s] = true
	}
	if got := Category(42).String(); got != "Category(42)" {
		t.Errorf("Category(42).String() = %q", got)
	}
	if !CategoryNotSent.Communication() || !CategoryOutcomeUnknown.Communication() || CategoryThrottled.Communication() {
		t.Error("Communication is wrong")
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{NewError(CategoryNotFound, "get", errors.New(`no object "x"`)), `get: not found: no object "x"`},
		{NewError(CategorySchema, "", errors.New("bad")), "schema: bad"},
		{&Error{Category: CategoryPolicy, Op: "modify"}, "modify: policy"},
		{&Error{}, "generic"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q; want %q", got, tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")}
	readReset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	readTimeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	write := &net.OpError{Op: "write", Net: "tcp", Err: errors.New("broken")}
	dns := &net.DNSError{Err: "no such host", Name: "ldap.example", IsNotFound: true}
	tests := []struct {
		name string
		err  error
		want Category
	}{
		{"nil", nil, CategoryGeneric},
		{"unknown", errors.New("something odd"), CategoryGeneric},
		{"io.EOF", io.EOF, CategoryGeneric},
		{"*Error", NewError(CategoryPolicy, "add", nil), CategoryPolicy},
		{"wrapped *Error", fmt.Errorf("outer: %w", NewError(CategorySchema, "add", nil)), CategorySchema},
		{"*Error wins over its cause", NewError(CategoryPermission, "add", context.DeadlineExceeded), CategoryPermission},
		{"first *Error in the chain", NewError(CategoryThrottled, "add", NewError(CategoryNotFound, "get", nil)), CategoryThrottled},
		{"joined", errors.Join(errors.New("x"), NewError(CategoryNotFound, "", nil)), CategoryNotFound},
		{"bare sentinel", ErrNotFound, CategoryNotFound},
		{"wrapped sentinel", fmt.Errorf("lookup: %w", ErrAlreadyExists), CategoryAlreadyExists},
		{"ErrCommunication", fmt.Errorf("x: %w", ErrCommunication), CategoryOutcomeUnknown},
		{"dial refused", refused, CategoryNotSent},
		{"dial timeout", dialTimeout, CategoryNotSent},
		{"wrapped dial", fmt.Errorf("connect: %w", dialTimeout), CategoryNotSent},
		{"ECONNREFUSED", syscall.ECONNREFUSED, CategoryNotSent},
		{"EHOSTUNREACH", fmt.Errorf("x: %w", syscall.EHOSTUNREACH), CategoryNotSent},
		{"ENETUNREACH", syscall.ENETUNREACH, CategoryNotSent},
		{"DNS", dns, CategoryNotSent},
		{"DNS in a dial", &net.OpError{Op: "dial", Err: dns}, CategoryNotSent},
		{"read reset", readReset, CategoryOutcomeUnknown},
		{"read timeout", readTimeout, CategoryOutcomeUnknown},
		{"write", write, CategoryOutcomeUnknown},
		{"deadline exceeded", context.DeadlineExceeded, CategoryOutcomeUnknown},
		{"wrapped deadline", fmt.Errorf("search: %w", context.DeadlineExceeded), CategoryOutcomeUnknown},
		{"os deadline", os.ErrDeadlineExceeded, CategoryOutcomeUnknown},
		{"ECONNRESET", syscall.ECONNRESET, CategoryOutcomeUnknown},
		{"EPIPE", fmt.Errorf("x: %w", syscall.EPIPE), CategoryOutcomeUnknown},
		{"canceled", context.Canceled, CategoryGeneric},
	}
	for _, tc := range tests {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %s; want %s", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestClassifyRealDial classifies the error of a real dial to a closed port.
func TestClassifyRealDial(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		t.Skip("something listens on the port just closed")
	}
	if got := Classify(err); got != CategoryNotSent {
		t.Fatalf("Classify(%v) = %s; want %s", err, got, CategoryNotSent)
	}
}

func TestWrap(t *testing.T) {
	t.Parallel()
	if Wrap("add", nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
	// A plain error gets the category Classify finds and the op.
	err := Wrap("search", context.DeadlineExceeded)
	var ce *Error
	if !errors.As(err, &ce) || ce.Category != CategoryOutcomeUnknown || ce.Op != "search" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wrap(deadline) = %#v", err)
	}
	if Classify(Wrap("x", errors.New("odd"))) != CategoryGeneric {
		t.Fatal("Wrap of an unknown error is not generic")
	}
	// An *Error keeps its category; its op is filled in only when missing,
	// and the original is not modified.
	orig := &Error{Category: CategoryThrottled, RetryAfter: time.Unix(100, 0), Err: errors.New("slow down")}
	err = Wrap("modify", orig)
	if !errors.As(err, &ce) || ce.Category != CategoryThrottled || ce.Op != "modify" || !ce.RetryAfter.Equal(time.Unix(100, 0)) {
		t.Fatalf("Wrap(*Error without op) = %#v", err)
	}
	if orig.Op != "" {
		t.Fatal("Wrap modified the original error")
	}
	named := NewError(CategoryNotFound, "get", nil)
	if got := Wrap("modify", named); got != error(named) {
		t.Fatalf("Wrap(*Error with op) = %v; want it unchanged", got)
	}
	wrapped := fmt.Errorf("ctx: %w", named)
	if got := Wrap("modify", wrapped); got != wrapped || Classify(got) != CategoryNotFound {
		t.Fatalf("Wrap(wrapped *Error) = %v", got)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := fmt.Errorf("x: %w", &Error{Category: CategoryThrottled, RetryAfter: at})
	if got := RetryAfter(err); !got.Equal(at) {
		t.Fatalf("RetryAfter = %v; want %v", got, at)
	}
	if got := RetryAfter(errors.New("plain")); !got.IsZero() {
		t.Fatalf("RetryAfter(plain) = %v", got)
	}
}

// TestClassifyTLSHandshake classifies real handshake failures: an untrusted
// certificate, a wrong host name, a peer that does not speak TLS. No request
// goes out on such a connection.
func TestClassifyTLSHandshake(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes are the point
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()

	for _, tc := range []struct {
		name string
		addr string
		cfg  *tls.Config
	}{
		{"untrusted certificate", addr, &tls.Config{}},
		{"wrong host name", addr, &tls.Config{RootCAs: pool, ServerName: "wrong.example"}},
		{"not TLS", plain.Addr().String(), &tls.Config{InsecureSkipVerify: true}},
	} {
		d := tls.Dialer{Config: tc.cfg}
		c, err := d.DialContext(t.Context(), "tcp", tc.addr)
		if err == nil {
			c.Close()
			t.Fatalf("%s: handshake succeeded", tc.name)
		}
		if got := Classify(err); got != CategoryNotSent {
			t.Errorf("%s: Classify(%v) = %s; want %s", tc.name, err, got, CategoryNotSent)
		}
	}
	// The same connection with the right trust works, so the failures above
	// are the handshake's.
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "example.com"}}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("trusted handshake: %v", err)
	}
	c.Close()
	if got := Classify(x509.CertificateInvalidError{Reason: x509.Expired}); got != CategoryNotSent {
		t.Errorf("expired certificate: %s", got)
	}
}
