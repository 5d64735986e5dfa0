package sqlstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// Defaults for Options.
const (
	// BusyTimeoutDefault is Options.BusyTimeout's default.
	BusyTimeoutDefault = 5 * time.Second
	// MaxOpenConnsDefault is Options.MaxOpenConns's default.
	MaxOpenConnsDefault = 8
	// TablePrefixDefault is Options.TablePrefix's default.
	TablePrefixDefault = "umbra_"
)

// Options configure a Store. The zero value is usable: every field has a
// default.
type Options struct {
	// BusyTimeout is how long an SQLite connection waits for another
	// process's write lock before giving up with SQLITE_BUSY. Writers of
	// one Store never wait on each other this way: they queue for the
	// Store's single write connection. Ignored by PostgreSQL. Default
	// BusyTimeoutDefault.
	BusyTimeout time.Duration
	// Clock is the time source for CreatedAt, UpdatedAt, claim and lease
	// expiry. Default: the wall clock.
	Clock connector.Clock
	// Logger receives migrations (Info) and nothing per call. Default: no
	// logging.
	Logger *slog.Logger
	// MaxOpenConns caps the connection pool: all connections on
	// PostgreSQL, the read connections on SQLite (which always writes
	// through one). Default MaxOpenConnsDefault.
	MaxOpenConns int
	// Schema is the PostgreSQL schema the tables live in, created when
	// missing. Empty: the first schema of the connection's search_path.
	// It must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 63
	// bytes); it is never quoted or interpolated before that check. SQLite
	// has no schemas: it must be empty there. Default empty.
	Schema string
	// TablePrefix starts every table and index name, so that several
	// umbra installations (or other applications) share one database. It
	// must be a lowercase identifier of at most 30 bytes. Default
	// TablePrefixDefault.
	TablePrefix string
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.BusyTimeout == 0 {
		o.BusyTimeout = BusyTimeoutDefault
	}
	if o.Clock == nil {
		o.Clock = connector.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = MaxOpenConnsDefault
	}
	if o.TablePrefix == "" {
		o.TablePrefix = TablePrefixDefault
	}
	return o
}

// validate reports every problem of o (defaults applied) at once, each
// naming the field and its value.
func (o Options) validate(d *dialect) error {
	var errs []error
	if o.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("sqlstore: Options.BusyTimeout %s is negative", o.BusyTimeout))
	}
	if o.MaxOpenConns < 0 {
		errs = append(errs, fmt.Errorf("sqlstore: Options.MaxOpenConns %d is negative", o.MaxOpenConns))
	}
	if len(o.TablePrefix) > 30 || !identRE.MatchString(o.TablePrefix) {
		errs = append(errs, fmt.Errorf("sqlstore: Options.TablePrefix %q is not a lowercase identifier of at most 30 bytes ([a-z_][a-z0-9_]*)", o.TablePrefix))
	}
	switch {
	case o.Schema != "" && !d.schemas:
		errs = append(errs, fmt.Errorf("sqlstore: Options.Schema %q: %s has no schemas; use TablePrefix", o.Schema, d.name))
	case o.Schema != "" && (len(o.Schema) > 63 || !identRE.MatchString(o.Schema)):
		errs = append(errs, fmt.Errorf("sqlstore: Options.Schema %q is not a lowercase identifier of at most 63 bytes ([a-z_][a-z0-9_]*)", o.Schema))
	}
	return errors.Join(errs...)
}
