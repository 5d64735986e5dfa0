package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/umbra-idm/umbra/connector"
)

// pool holds bound connections. Single operations share at most size of
// them (sem); a Search takes one outside that limit, since its callback may
// call the connector again.
type pool struct {
	c    *Connector
	sem  chan struct{}
	mu   sync.Mutex
	idle []*goldap.Conn
	// closed is set by Close; no connection is handed out after it.
	closed bool
}

func newPool(c *Connector, size int) *pool {
	return &pool{c: c, sem: make(chan struct{}, size)}
}

// get returns a bound connection, counted against the pool size when
// counted is true. Errors are categorized: a failure to connect is
// CategoryNotSent, a refused bind CategoryConfiguration.
func (p *pool) get(ctx context.Context, op string, counted bool) (*goldap.Conn, error) {
	if counted {
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, &connector.Error{Category: connector.CategoryNotSent, Op: op,
				Err: fmt.Errorf("waiting for a connection: %w", ctx.Err())}
		}
	}
	conn, err := p.take(ctx, op)
	if err != nil && counted {
		<-p.sem
	}
	return conn, err
}

func (p *pool) take(ctx context.Context, op string) (*goldap.Conn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, newError(connector.CategoryNotSent, op, "connector is closed")
	}
	for len(p.idle) > 0 {
		conn := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !conn.IsClosing() {
			p.mu.Unlock()
			return conn, nil
		}
	}
	p.mu.Unlock()
	return p.c.dial(ctx, op)
}

// The states put accepts.
const (
	connHealthy = iota // back to the idle list
	connDiscard        // closed (its state is unknown, e.g. a paged search stopped midway)
	connFailed         // closed with every idle connection
)

// put returns conn to the pool. A failed connection is closed, and so are
// the idle ones: they lead to the same server, which most likely went away
// with it, and a request on a dead connection could not be told apart from
// one the server lost after reading it.
func (p *pool) put(conn *goldap.Conn, counted bool, state int) {
	if counted {
		defer func() { <-p.sem }()
	}
	p.mu.Lock()
	if state != connHealthy || p.closed || len(p.idle) >= cap(p.sem) {
		var stale []*goldap.Conn
		if state == connFailed {
			stale, p.idle = p.idle, nil
		}
		p.mu.Unlock()
		conn.Close()
		for _, s := range stale {
			s.Close()
		}
		return
	}
	p.idle = append(p.idle, conn)
	p.mu.Unlock()
}

// close closes the idle connections and refuses new ones.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, conn := range idle {
		conn.Close()
	}
}

// tlsConfig builds the TLS configuration from cfg.
func tlsConfig(cfg Config, host string) (*tls.Config, error) {
	tc := &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: cfg.TLS.InsecureSkipVerify, //nolint:gosec // opt-in, documented as test-only
		MinVersion:         tls.VersionTLS12,
	}
	if cfg.TLS.ServerName != "" {
		tc.ServerName = cfg.TLS.ServerName
	}
	if cfg.TLS.CAFile != "" {
		pem, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap: Config.TLS.CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap: Config.TLS.CAFile %q holds no PEM certificate", cfg.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// dial connects, upgrades with StartTLS when configured, and binds. Every
// step honours ctx and DialTimeout. Nothing of the caller's operation was
// sent yet, so communication failures are CategoryNotSent.
func (c *Connector) dial(ctx context.Context, op string) (*goldap.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	d := &net.Dialer{}
	var (
		nc  net.Conn
		err error
	)
	if c.url.Scheme == "ldaps" {
		nc, err = (&tls.Dialer{NetDialer: d, Config: c.tls}).DialContext(ctx, "tcp", c.hostPort)
	} else {
		nc, err = d.DialContext(ctx, "tcp", c.hostPort)
	}
	if err != nil {
		return nil, &connector.Error{Category: connector.CategoryNotSent, Op: op,
			Err: fmt.Errorf("connecting to %s: %w", c.cfg.URL, err)}
	}
	conn := goldap.NewConn(nc, c.url.Scheme == "ldaps")
	conn.Start()
	conn.SetTimeout(c.cfg.DialTimeout)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	fail := func(step string, err error) (*goldap.Conn, error) {
		stop()
		conn.Close()
		cat := connector.CategoryNotSent
		var le *goldap.Error
		if errors.As(err, &le) && le.ResultCode != goldap.ErrorNetwork && le.ResultCode != goldap.LDAPResultTimeout {
			cat = category(le.ResultCode)
			if cat == connector.CategoryGeneric || cat == connector.CategorySchema || cat == connector.CategoryNotFound {
				cat = connector.CategoryConfiguration
			}
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, &connector.Error{Category: cat, Op: op,
			Err: scrub(fmt.Errorf("%s with %s: %w", step, c.cfg.URL, err), c.password())}
	}
	if c.cfg.TLS.StartTLS {
		if err := conn.StartTLS(c.tls); err != nil {
			return fail("StartTLS", err)
		}
	}
	if c.cfg.BindDN != "" {
		if err := conn.Bind(c.cfg.BindDN, c.password()); err != nil {
			return fail(fmt.Sprintf("binding as %q", c.cfg.BindDN), err)
		}
	}
	if !stop() {
		conn.Close()
		return nil, &connector.Error{Category: connector.CategoryNotSent, Op: op,
			Err: fmt.Errorf("connecting to %s: %w", c.cfg.URL, ctx.Err())}
	}
	c.log.Debug("ldap: connected", "url", c.cfg.URL)
	return conn, nil
}

// do runs fn on a pooled connection and categorizes its error. It bounds
// the requests with OpTimeout and ctx: when ctx ends first, the connection
// is closed (go-ldap requests take no context) and the error is
// CategoryOutcomeUnknown (the server may have acted on a request already
// sent). A ctx that ended before anything was sent is CategoryNotSent.
func (c *Connector) do(ctx context.Context, op string, fn func(*goldap.Conn) error) error {
	return c.run(ctx, op, true, fn)
}

// run is do; counted false takes a connection outside the pool's limit.
func (c *Connector) run(ctx context.Context, op string, counted bool, fn func(*goldap.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return &connector.Error{Category: connector.CategoryNotSent, Op: op, Err: err}
	}
	conn, err := c.pool.get(ctx, op, counted)
	if err != nil {
		return err
	}
	conn.SetTimeout(c.opTimeout(ctx))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = fn(conn)
	if !stop() {
		c.pool.put(conn, counted, connDiscard)
		var cb *callbackError
		if err == nil || errors.As(err, &cb) {
			return err
		}
		var ce *connector.Error
		if errors.As(err, &ce) && !ce.Category.Communication() {
			return err
		}
		return &connector.Error{Category: connector.CategoryOutcomeUnknown, Op: op, Err: fmt.Errorf("request abandoned: %w", ctx.Err())}
	}
	var cb *callbackError
	switch {
	case errors.As(err, &cb):
		c.pool.put(conn, counted, connDiscard)
		return err
	case isConnectionError(err):
		c.log.Warn("ldap: connection failed; dropping the idle ones", "url", c.cfg.URL, "op", op,
			"err", scrub(err, c.password()))
		c.pool.put(conn, counted, connFailed)
	default:
		c.pool.put(conn, counted, connHealthy)
	}
	return c.ldapError(op, err)
}

// opTimeout is OpTimeout, or less when ctx ends sooner.
func (c *Connector) opTimeout(ctx context.Context) time.Duration {
	t := c.cfg.OpTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = max(left, time.Millisecond)
		}
	}
	return t
}

// hostPort returns the address to dial for u.
func hostPort(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = goldap.DefaultLdapPort
		if u.Scheme == "ldaps" {
			port = goldap.DefaultLdapsPort
		}
	}
	return net.JoinHostPort(host, port)
}
