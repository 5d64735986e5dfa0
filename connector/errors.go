package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Category says what kind of failure a connector error is, and so what the
// consistency engine does about it. Every error a connector returns carries
// exactly one category; Classify finds it.
type Category uint8

// The error categories. The zero value is CategoryGeneric.
const (
	// CategoryGeneric is anything else: fatal by default; a resource
	// setting may make it retryable.
	CategoryGeneric Category = iota
	// CategoryNotSent is a communication failure before the request reached
	// the resource (connection refused, DNS, TLS handshake). The operation
	// certainly did not happen. Like database/sql's ErrBadConn, a connector
	// MUST NOT return it when the resource might have executed the request.
	CategoryNotSent
	// CategoryOutcomeUnknown is a communication failure after the request
	// went out (timeout, connection lost, 5xx): the operation may or may
	// not have happened, and the engine reads the resource before retrying.
	CategoryOutcomeUnknown
	// CategoryThrottled is rate limiting; Error.RetryAfter says when to
	// come back. Not counted as a failed attempt.
	CategoryThrottled
	// CategoryAlreadyExists is an add that conflicts with an existing
	// object. Error.Existing names it when the connector knows.
	CategoryAlreadyExists
	// CategoryNotFound is an operation on an object that is not there.
	CategoryNotFound
	// CategorySchema is an unknown attribute, a bad value: never retried.
	CategorySchema
	// CategoryConfiguration is bad credentials, a bad base DN: fatal, and
	// the resource is marked broken.
	CategoryConfiguration
	// CategoryPolicy is a policy violation (password policy, constraint).
	CategoryPolicy
	// CategoryPermission is access denied.
	CategoryPermission
)

var categoryNames = [...]string{"generic", "communication (not sent)", "communication (outcome unknown)", "throttled",
	"already exists", "not found", "schema", "configuration", "policy", "permission"}

// String returns the Category as text for logs and errors.
func (c Category) String() string {
	if int(c) < len(categoryNames) {
		return categoryNames[c]
	}
	return fmt.Sprintf("Category(%d)", c)
}

// Communication reports whether c is one of the two communication categories.
func (c Category) Communication() bool { return c == CategoryNotSent || c == CategoryOutcomeUnknown }

// Sentinel returns the sentinel error of c (ErrGeneric for an unknown one).
func (c Category) Sentinel() error {
	if int(c) < len(sentinels) {
		return sentinels[c]
	}
	return ErrGeneric
}

// The category sentinels. errors.Is(err, ErrNotFound) holds for any error of
// category CategoryNotFound; ErrCommunication matches both communication
// categories.
var (
	ErrGeneric        = errors.New("generic error")
	ErrNotSent        = errors.New("communication error: request not sent")
	ErrOutcomeUnknown = errors.New("communication error: outcome unknown")
	ErrThrottled      = errors.New("throttled")
	ErrAlreadyExists  = errors.New("object already exists")
	ErrNotFound       = errors.New("object not found")
	ErrSchema         = errors.New("schema violation")
	ErrConfiguration  = errors.New("configuration error")
	ErrPolicy         = errors.New("policy violation")
	ErrPermission     = errors.New("permission denied")
	// ErrCommunication matches ErrNotSent and ErrOutcomeUnknown.
	ErrCommunication = errors.New("communication error")
)

var sentinels = [...]error{ErrGeneric, ErrNotSent, ErrOutcomeUnknown, ErrThrottled, ErrAlreadyExists,
	ErrNotFound, ErrSchema, ErrConfiguration, ErrPolicy, ErrPermission}

// Error is a categorized connector error. Connectors return it (through
// NewError or by value) so that engines need no knowledge of the resource's
// own error codes.
type Error struct {
	// Category is what kind of failure this is.
	Category Category
	// Op names the operation that failed ("add", "modify", "search", ...).
	Op string
	// RetryAfter is when a throttled request may be sent again (zero: the
	// resource gave no time).
	RetryAfter time.Time
	// Existing identifies the object an add collided with, when known.
	Existing *Identifiers
	// Err is the underlying error. Its text MUST NOT contain secrets.
	Err error
}

// NewError returns an *Error of category c for operation op wrapping err.
func NewError(c Category, op string, err error) *Error {
	return &Error{Category: c, Op: op, Err: err}
}

// Error returns the message of the Error.
func (e *Error) Error() string {
	msg := e.Category.String()
	if e.Op != "" {
		msg = e.Op + ": " + msg
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel of e's category, and ErrCommunication for both
// communication categories.
func (e *Error) Is(target error) bool {
	if target == ErrCommunication {
		return e.Category.Communication()
	}
	return target == e.Category.Sentinel()
}

// Classify returns the category of err: the category of the first *Error in
// its chain; else what a category sentinel, a network error, a failed TLS
// handshake, or a context error says; else CategoryGeneric. A nil error is CategoryGeneric too;
// callers check for nil first.
func Classify(err error) Category {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Category
	}
	for c, s := range sentinels {
		if errors.Is(err, s) {
			return Category(c)
		}
	}
	if errors.Is(err, ErrCommunication) {
		return CategoryOutcomeUnknown
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return CategoryNotSent
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return CategoryNotSent
	}
	if tlsHandshakeFailure(err) {
		return CategoryNotSent
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		if opErr.Op == "dial" {
			return CategoryNotSent
		}
		return CategoryOutcomeUnknown
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return CategoryOutcomeUnknown
	}
	return CategoryGeneric
}

// Wrap returns err as an *Error: err itself when it already is one in its
// chain (category kept, op added when missing), else a new *Error with the
// category Classify finds. Wrap(nil) is nil.
func Wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		if ce.Op == "" {
			cp := *ce
			cp.Op = op
			return &cp
		}
		return err
	}
	return &Error{Category: Classify(err), Op: op, Err: err}
}

// tlsHandshakeFailure reports a failed TLS handshake: the peer's certificate
// was refused, or the peer spoke something else than TLS. No request goes out
// on a connection whose handshake failed.
func tlsHandshakeFailure(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &authority) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}

// RetryAfter returns the RetryAfter time of the first *Error in err's chain.
func RetryAfter(err error) time.Time {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.RetryAfter
	}
	return time.Time{}
}
