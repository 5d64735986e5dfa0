// Command ldap-livesync follows the changes of an LDAP directory (OpenLDAP)
// with umbra's live-sync engine and prints each change as it is applied.
//
// The position in the directory's change stream (the token) and the shadows
// of the entries are kept in a SQLite file (-db). The first run takes the
// directory's current position and replays no history; every later run
// prints the changes made since, and moves the token past each one. Stop it
// with Ctrl-C at any time: the next start resumes from the stored token, so
// no change is lost (one may be shown again, since delivery is at least
// once).
//
// Two strategies read the changes:
//
//   - accesslog: the records of OpenLDAP's accesslog overlay (cn=accesslog),
//     precise tokens, adds, modifies, renames and deletes;
//   - modifyTimestamp: a search on modifyTimestamp, any directory, one token
//     per fetch (the last second is shown again), no deletes.
//
// The bind password is read from the environment variable
// UMBRA_LDAP_PASSWORD, never from a flag, and is never printed.
//
// Usage:
//
//	UMBRA_LDAP_PASSWORD=secret go run ./examples/ldap-livesync -url ldap://127.0.0.1:389 \
//	    -bind-dn cn=admin,dc=example,dc=com -base-dn ou=people,dc=example,dc=com -interval 5s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/ldap"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// PasswordEnv is the environment variable holding the bind password.
const PasswordEnv = "UMBRA_LDAP_PASSWORD"

const (
	prog       = "ldap-livesync"
	resourceID = "ldap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, prog+":", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("url", "ldap://127.0.0.1:389", "the directory: ldap://host:port or ldaps://host:port")
	bindDN := fs.String("bind-dn", "cn=admin,dc=example,dc=com", "DN to bind as (its password comes from $"+PasswordEnv+"); empty: anonymous")
	baseDN := fs.String("base-dn", "ou=people,dc=example,dc=com", "where the followed entries live")
	objectClass := fs.String("objectclass", "inetOrgPerson", "LDAP object class of the followed entries")
	naming := fs.String("naming-attribute", "uid", "attribute forming the entries' RDN")
	strategy := fs.String("strategy", string(ldap.LiveSyncAccessLog), "where changes are read: accesslog (precise, with deletes) or modifyTimestamp (any directory, no deletes)")
	accessLog := fs.String("accesslog-base", ldap.AccessLogBaseDefault, "suffix of the accesslog database (strategy accesslog)")
	db := fs.String("db", "ldap-livesync.db", "SQLite file keeping the token and the shadows")
	interval := fs.Duration("interval", 0, "run every interval until Ctrl-C; 0 runs once and exits")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s [flags]\n\n", prog)
		fmt.Fprintln(out, "Follows an LDAP directory's changes with umbra's live sync, printing each change as it is applied.")
		fmt.Fprintln(out, "The first run takes the current position; later runs resume from the token stored in -db.")
		fmt.Fprintf(out, "The bind password is read from $%s.\n\nFlags:\n", PasswordEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	strat := ldap.LiveSyncStrategy(*strategy)
	if strat != ldap.LiveSyncAccessLog && strat != ldap.LiveSyncModifyTimestamp {
		return fmt.Errorf("-strategy %q: want %s or %s", *strategy, ldap.LiveSyncAccessLog, ldap.LiveSyncModifyTimestamp)
	}
	if *interval < 0 {
		return fmt.Errorf("-interval %s: must not be negative", *interval)
	}
	password := os.Getenv(PasswordEnv)
	if *bindDN != "" && password == "" {
		return fmt.Errorf("-bind-dn %q needs its password in $%s (or bind anonymously with -bind-dn \"\")", *bindDN, PasswordEnv)
	}

	class := connector.ObjectClass(*objectClass)
	conn, err := ldap.New(ldap.Config{
		URL: *url, BindDN: *bindDN, BindPassword: password, LiveSync: strat, AccessLogBase: *accessLog,
		Classes: map[connector.ObjectClass]ldap.ClassConfig{
			class: {BaseDN: *baseDN, LDAPObjectClasses: []string{*objectClass}, NamingAttribute: *naming},
		},
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Test(ctx); err != nil {
		return fmt.Errorf("checking the directory: %w", err)
	}
	store, err := sqlstore.OpenSQLite(ctx, *db, sqlstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()

	out := &printer{w: stdout}
	task, err := livesync.New(livesync.Config{
		ResourceID: resourceID, Class: class, Connector: conn, Store: store, Tokens: store,
		// One token per strategy: their tokens do not mix.
		TaskName: "livesync-" + string(strat),
		Handler:  out.change,
		Observer: livesync.Observer{RunFinished: func(_ livesync.TokenKey, r livesync.Result, err error) { out.summary(r, err) }},
	})
	if err != nil {
		return err
	}
	tok, found, err := task.Token(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "live sync of %s (%s below %s), strategy %s, store %s\n", *url, *objectClass, *baseDN, strat, *db)
	if found {
		fmt.Fprintf(stdout, "resuming after token %s\n", tok)
	}

	if *interval == 0 {
		_, err := task.Run(ctx)
		return err
	}
	fmt.Fprintf(stdout, "running every %s; Ctrl-C stops (the next start resumes from the stored token)\n", *interval)
	// Run errors do not end the loop: the observer prints them and the
	// next run starts again from the stored token.
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		task.Run(ctx)
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	tok, _, terr := task.Token(context.WithoutCancel(ctx))
	if terr != nil {
		return terr
	}
	fmt.Fprintf(stdout, "stopped; token %s is stored in %s\n", tok, *db)
	return nil
}

// printer prints what the task does. The task calls it from one goroutine
// at a time (one worker).
type printer struct {
	w io.Writer
}

func (p *printer) change(_ context.Context, ev livesync.Event) error {
	c := ev.Change
	name := c.ID.Name
	if c.OldName != "" {
		name = c.OldName + " → " + name
	}
	fmt.Fprintf(p.w, "  %-16s %s  token %s\n", c.Type, name, c.Token)
	return nil
}

func (p *printer) summary(r livesync.Result, err error) {
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(p.w, "run interrupted (token stays at %s)\n", r.TokenAfter)
	case err != nil:
		fmt.Fprintf(p.w, "run stopped: %v (token stays at %s)\n", err, r.TokenAfter)
	case r.FirstRun:
		fmt.Fprintf(p.w, "first run: took the directory's current position %s; changes from now on will be shown\n", r.TokenAfter)
	case r.Processed == 0:
		fmt.Fprintf(p.w, "no changes (token %s)\n", r.TokenAfter)
	default:
		var by []string
		for t, n := range r.ByType {
			by = append(by, fmt.Sprintf("%s %d", t, n))
		}
		sort.Strings(by)
		fmt.Fprintf(p.w, "applied %d changes (%s); token %s → %s\n", r.Processed, strings.Join(by, ", "), r.TokenBefore, r.TokenAfter)
	}
}
