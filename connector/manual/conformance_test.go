package manual

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/connectortest"
)

// diligentPerson works a ticket as a careful administrator would: the work
// is done when it can be, and the ticket rejected with the matching cause
// when the account is missing or the name is taken.
func diligentPerson(ctx context.Context, c *Conn, ref string) (Resolution, error) {
	t, err := c.sink.Status(ctx, ref)
	if err != nil {
		return Resolution{}, err
	}
	st, err := c.state(ctx)
	if err != nil {
		return Resolution{}, err
	}
	target := st.find(t.Class, connector.Identifiers{UID: t.UID, Name: t.Name})
	switch t.Operation {
	case OpAdd:
		if st.find(t.Class, connector.Identifiers{Name: t.Name}) != nil {
			return Resolution{Status: StatusRejected, Cause: connector.CategoryAlreadyExists, Reason: "name taken"}, nil
		}
	case OpModify, OpDelete:
		if target == nil {
			return Resolution{Status: StatusRejected, Cause: connector.CategoryNotFound, Reason: "no such account"}, nil
		}
		if other := st.find(t.Class, connector.Identifiers{Name: t.NewName}); t.NewName != "" && other != nil && other != target {
			return Resolution{Status: StatusRejected, Cause: connector.CategoryAlreadyExists, Reason: "new name taken"}, nil
		}
	}
	return Resolution{Status: StatusDone}, nil
}

func harness(newSink func(t *testing.T) TicketSink) connectortest.Harness {
	return connectortest.Harness{
		Class: "account",
		New: func(t *testing.T) connector.Connector {
			c, err := New(Options{Sink: newSink(t)})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		CompleteAsync: func(cc connector.Connector, ref string) error {
			c := cc.(*Conn)
			ctx := context.Background()
			// One person at a time: deciding and closing must not
			// interleave with another ticket's.
			personMu.Lock()
			defer personMu.Unlock()
			r, err := diligentPerson(ctx, c, ref)
			if err != nil {
				return err
			}
			switch s := c.sink.(type) {
			case *FileSink:
				return s.Close(ctx, ref, r)
			case *MemSink:
				return s.Close(ref, r, t0)
			}
			return errors.New("unknown sink")
		},
		NewAttributes: func(i int) connector.Attributes {
			return connector.Attributes{
				"uid":         {fmt.Sprintf("user-%d", i)},
				"cn":          {fmt.Sprintf("User %d", i)},
				"description": {fmt.Sprintf("person %d", i)},
				"mail":        {fmt.Sprintf("user-%d@example.com", i), fmt.Sprintf("u%d@example.org", i)},
			}
		},
		NamingAttribute:      "uid",
		ModifiableAttribute:  "description",
		MultiValuedAttribute: "mail",
	}
}

func TestConformanceFileSink(t *testing.T) {
	t.Parallel()
	connectortest.Run(t, connectortest.Capabilities{Async: true, Search: true, Rename: true},
		harness(func(t *testing.T) TicketSink {
			s, err := NewFileSink(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}))
}

func TestConformanceMemSink(t *testing.T) {
	t.Parallel()
	connectortest.Run(t, connectortest.Capabilities{Async: true, Search: true, Rename: true, ControlBytes: true},
		harness(func(*testing.T) TicketSink { return &MemSink{} }))
}
