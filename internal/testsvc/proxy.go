package testsvc

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Proxy is a loopback TCP proxy between a client (a database/sql pool) and
// a server (PostgreSQL), for tests that lose the connection on command: Cut
// drops every open connection at once, as a failed network or a restarted
// server would; Block makes new connections fail until Unblock. It listens
// on 127.0.0.1 on a port of its own and stops, closing everything, when the
// test that made it ends.
//
// A Proxy is safe for concurrent use: Cut is meant to be called from a
// connector hook or an observer while the engine works.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[int]*proxied
	next    int
	blocked bool
	closed  bool
	cuts    int // connections dropped by Cut
	refused int // connections refused while blocked
	// trap, when set, is matched against what clients send (see
	// CutAnswerTo).
	trap    func(clientData []byte) bool
	trapped chan struct{}
	wg      sync.WaitGroup
}

// proxied is one client connection and its server connection.
type proxied struct {
	client, server net.Conn
	// dropAnswer is set when the client sent what the trap matched: the
	// server's next answer is not delivered, the pair is cut instead.
	dropAnswer atomic.Bool
}

func (p *proxied) close() {
	p.client.Close()
	p.server.Close()
}

// NewProxy starts a proxy to target (host:port) and stops it when t ends.
// It fails t when it cannot listen.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testsvc: proxy: listen: %v", err)
	}
	p := &Proxy{t: t, ln: ln, target: target, conns: map[int]*proxied{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's address (127.0.0.1:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut drops every open connection (both directions closed at once) and
// returns how many it dropped. New connections are accepted as before
// unless the proxy is blocked.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	for id, c := range p.conns {
		c.close()
		delete(p.conns, id)
	}
	p.cuts += n
	return n
}

// Block makes the proxy refuse new connections (each is accepted and closed
// at once, before a byte reaches the server) until Unblock. Open
// connections are left alone; call Cut as well to drop them.
func (p *Proxy) Block() {
	p.mu.Lock()
	p.blocked = true
	p.mu.Unlock()
}

// Unblock lets new connections through again.
func (p *Proxy) Unblock() {
	p.mu.Lock()
	p.blocked = false
	p.mu.Unlock()
}

// CutAnswerTo arms a one-shot trap: the first data a client sends for which
// match returns true is delivered to the server, and the server's answer to
// it is not delivered: the connection is cut the moment the answer arrives.
// The client is left not knowing whether its statement took effect (it did,
// as far as the server is concerned): a connection lost in the middle of a
// statement, or of a transaction's commit, at a deterministic point. match
// sees each chunk the client writes (for PostgreSQL, usually whole protocol
// messages: a simple query 'Q' carries its SQL text, a bind 'B' its
// parameter values). The returned channel is closed when the trap has cut.
func (p *Proxy) CutAnswerTo(match func(clientData []byte) bool) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trap = match
	p.trapped = make(chan struct{})
	return p.trapped
}

// Stats returns how many connections are open, how many Cut dropped and how
// many were refused while blocked.
func (p *Proxy) Stats() (open, cut, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns), p.cuts, p.refused
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.closed || p.blocked {
			if p.blocked {
				p.refused++
			}
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed || p.blocked {
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		id := p.next
		p.next++
		pc := &proxied{client: c, server: s}
		p.conns[id] = pc
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(id, pc, s, c, true)
		go p.pipe(id, pc, c, s, false)
	}
}

// pipe copies from src to dst until either side fails, then closes both
// and forgets the pair. fromClient says which way it copies: client data is
// matched against the trap; a server answer to trapped data cuts the pair.
func (p *Proxy) pipe(id int, pc *proxied, dst, src net.Conn, fromClient bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient {
				p.checkTrap(pc, buf[:n])
			} else if pc.dropAnswer.Load() {
				p.mu.Lock()
				p.cuts++
				close(p.trapped)
				p.mu.Unlock()
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	pc.close()
	p.mu.Lock()
	if p.conns[id] == pc {
		delete(p.conns, id)
	}
	p.mu.Unlock()
}

// checkTrap disarms the trap and marks pc when data matches it.
func (p *Proxy) checkTrap(pc *proxied, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trap != nil && p.trap(data) {
		p.trap = nil
		pc.dropAnswer.Store(true)
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	for id, c := range p.conns {
		c.close()
		delete(p.conns, id)
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// PostgresProxy starts a Proxy to the PostgreSQL server dsn names and
// returns it with dsn rewritten to connect through it (same user, database
// and parameters). It fails t when dsn cannot be parsed or names no single
// TCP host. The message never carries the DSN's password.
func PostgresProxy(t testing.TB, dsn string) (*Proxy, string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("testsvc: PostgresProxy: the DSN cannot be parsed")
	}
	if strings.HasPrefix(cfg.Host, "/") || len(cfg.Fallbacks) > 0 {
		t.Fatalf("testsvc: PostgresProxy: %s is not a single TCP server", describe(cfg))
	}
	target := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	p := NewProxy(t, target)
	out, err := redirect(dsn, p.Addr())
	if err != nil {
		t.Fatalf("testsvc: PostgresProxy: %v", err)
	}
	return p, out
}

// redirect returns dsn with its host and port replaced by addr.
func redirect(dsn, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("the DSN URL cannot be parsed")
		}
		u.Host = addr
		return u.String(), nil
	}
	// key=value form: later keys win.
	return dsn + " host=" + host + " port=" + port, nil
}
