package ldap

import (
	"errors"
	"fmt"
	"net"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

// category maps an LDAP result code to an error category.
//
//	68 entryAlreadyExists                          already exists
//	32 noSuchObject                                not found
//	16, 17, 18, 20, 21, 34, 64, 65, 67, 69, 201    schema
//	7, 8, 13, 48, 49, 206                          configuration
//	50, 123                                        permission
//	19, 53, 66                                     policy
//	51 busy                                        throttled
//	52 unavailable, 81 server down, 91 connect     not sent
//	85 timeout                                     outcome unknown
//	anything else                                  generic
//
// Network errors (go-ldap's ErrorNetwork) are not decided here: see
// classify.
func category(code uint16) connector.Category {
	switch code {
	case goldap.LDAPResultEntryAlreadyExists:
		return connector.CategoryAlreadyExists
	case goldap.LDAPResultNoSuchObject:
		return connector.CategoryNotFound
	case goldap.LDAPResultNoSuchAttribute, goldap.LDAPResultUndefinedAttributeType,
		goldap.LDAPResultInappropriateMatching, goldap.LDAPResultAttributeOrValueExists,
		goldap.LDAPResultInvalidAttributeSyntax, goldap.LDAPResultInvalidDNSyntax,
		goldap.LDAPResultNamingViolation, goldap.LDAPResultObjectClassViolation,
		goldap.LDAPResultNotAllowedOnRDN, goldap.LDAPResultObjectClassModsProhibited,
		goldap.ErrorFilterCompile:
		return connector.CategorySchema
	case goldap.LDAPResultAuthMethodNotSupported, goldap.LDAPResultStrongAuthRequired,
		goldap.LDAPResultConfidentialityRequired, goldap.LDAPResultInappropriateAuthentication,
		goldap.LDAPResultInvalidCredentials, goldap.ErrorEmptyPassword:
		return connector.CategoryConfiguration
	case goldap.LDAPResultInsufficientAccessRights, goldap.LDAPResultAuthorizationDenied:
		return connector.CategoryPermission
	case goldap.LDAPResultConstraintViolation, goldap.LDAPResultUnwillingToPerform,
		goldap.LDAPResultNotAllowedOnNonLeaf:
		return connector.CategoryPolicy
	case goldap.LDAPResultBusy:
		return connector.CategoryThrottled
	case goldap.LDAPResultUnavailable, goldap.LDAPResultServerDown, goldap.LDAPResultConnectError:
		// The server refused the request without acting on it.
		return connector.CategoryNotSent
	case goldap.LDAPResultTimeout:
		return connector.CategoryOutcomeUnknown
	}
	return connector.CategoryGeneric
}

// preSendMessages are go-ldap's network errors raised before a request is
// written to the connection: the server never saw it.
var preSendMessages = []string{
	"ldap: connection closed",
	"ldap: could not send message for unknown reason",
	"ldap: connection is in startls phase",
	"ldap: cannot StartTLS with outstanding requests",
}

// classify returns the category of an error returned by go-ldap for a
// request on an established connection.
func classify(err error) connector.Category {
	var le *goldap.Error
	if !errors.As(err, &le) {
		if strings.Contains(err.Error(), "unable to send request") {
			// The write failed: the server cannot have read a whole request.
			return connector.CategoryNotSent
		}
		if c := connector.Classify(err); c != connector.CategoryGeneric {
			return c
		}
		return connector.CategoryOutcomeUnknown
	}
	if le.ResultCode != goldap.ErrorNetwork {
		return category(le.ResultCode)
	}
	var opErr *net.OpError
	if errors.As(le.Err, &opErr) && opErr.Op == "dial" {
		return connector.CategoryNotSent
	}
	if le.Err != nil {
		for _, m := range preSendMessages {
			if le.Err.Error() == m {
				return connector.CategoryNotSent
			}
		}
	}
	return connector.CategoryOutcomeUnknown
}

// isConnectionError reports whether err means the connection is unusable.
func isConnectionError(err error) bool {
	if err == nil {
		return false
	}
	var ce *connector.Error
	if errors.As(err, &ce) && !errors.As(ce.Err, new(*goldap.Error)) {
		// The connector's own verdict (not found, schema...): the
		// connection is fine unless it says communication.
		return ce.Category.Communication()
	}
	var le *goldap.Error
	if errors.As(err, &le) {
		switch le.ResultCode {
		case goldap.ErrorNetwork, goldap.LDAPResultServerDown, goldap.LDAPResultConnectError,
			goldap.LDAPResultTimeout, goldap.ErrorUnexpectedMessage, goldap.ErrorUnexpectedResponse,
			goldap.ErrorMalformedPacket, goldap.LDAPResultUnavailable:
			return true
		}
		return false
	}
	return true
}

// secretError hides a secret in the text of an error while keeping its
// chain for errors.Is and errors.As.
type secretError struct {
	msg string
	err error
}

func (e *secretError) Error() string { return e.msg }
func (e *secretError) Unwrap() error { return e.err }

// scrub returns err, or err with every occurrence of secret in its text
// replaced, when it has one. A server may echo request values in its
// diagnostic messages; the bind password must never travel that way.
func scrub(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &secretError{msg: strings.ReplaceAll(err.Error(), secret, redacted), err: err}
}

// ldapError wraps an LDAP failure of op as a categorized connector error.
func (c *Connector) ldapError(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connector.Error
	if errors.As(err, &ce) {
		return err
	}
	return &connector.Error{Category: classify(err), Op: op, Err: scrub(err, c.password())}
}

// limitError turns a server limit that cut a search short (LDAP 3, 4, 11)
// into CategoryConfiguration: an incomplete listing must never pass for a
// complete one (reconciliation would take the missing objects for deleted).
func (c *Connector) limitError(op, what string, err error) error {
	if goldap.IsErrorAnyOf(err, goldap.LDAPResultSizeLimitExceeded, goldap.LDAPResultTimeLimitExceeded,
		goldap.LDAPResultAdminLimitExceeded) {
		return &connector.Error{Category: connector.CategoryConfiguration, Op: op,
			Err: fmt.Errorf("a server limit cut the search of %s short; raise the limits of %q (OpenLDAP: olcLimits size.prtotal=unlimited): %w",
				what, c.cfg.BindDN, scrub(err, c.password()))}
	}
	return err
}

// newError returns a categorized error of op with a formatted message.
func newError(cat connector.Category, op, format string, args ...any) error {
	return &connector.Error{Category: cat, Op: op, Err: fmt.Errorf(format, args...)}
}
