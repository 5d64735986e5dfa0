// Package sqltable is a connector to accounts kept in relational tables: one
// table per object class, columns mapped to attributes, the key column as
// the UID and a unique name column as the secondary identifier. It works on
// PostgreSQL and SQLite through database/sql, with parameterized SQL only.
//
// # Live sync
//
// With Config.LiveSync the connector installs triggers that record every
// insert, update and delete of a mapped table in a change-log table (the
// "DB table connector" with precise tokens). Changes carry no attributes: the
// engine reads the row, so it always sees the row as it is now.
//
// On SQLite there is one writer at a time, so the change log's sequence
// number is commit order and the token is that number. On PostgreSQL a
// sequence number is taken when a row is written, not when its transaction
// commits, so a reader that moved past number 11 could miss number 10
// committed a moment later. The token is therefore the pair (transaction ID,
// sequence), and a fetch returns only changes of transactions older than the
// oldest one still running (pg_snapshot_xmin): no transaction can later
// commit a change below the token. A long-running transaction holds live
// sync back until it ends; that is the price of never skipping.
//
// Attributes are single-valued (one column each): a second value is a schema
// error.
package sqltable

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"

	"github.com/umbra-idm/umbra/connector"
)

// Dialect is the SQL dialect of the database.
type Dialect uint8

// The dialects.
const (
	Postgres Dialect = iota + 1
	SQLite
)

// String returns the Dialect as text for logs and errors.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return fmt.Sprintf("Dialect(%d)", d)
}

// Table maps one object class to a table.
type Table struct {
	// Name is the table, optionally schema-qualified ("hr.accounts").
	Name string
	// KeyColumn holds the UID. The database assigns it on insert
	// (PostgreSQL identity/serial/default, SQLite INTEGER PRIMARY KEY
	// AUTOINCREMENT). A UID MUST never be reused: on SQLite, a plain
	// INTEGER PRIMARY KEY hands a deleted row's key to the next insert,
	// and a shadow of the deleted object would then follow a stranger —
	// declare it AUTOINCREMENT.
	KeyColumn string
	// NameColumn holds the Name (unique). It must be mapped in Columns; the
	// attribute mapped to it is the naming attribute.
	NameColumn string
	// Columns maps attribute names to columns.
	Columns map[string]string
}

// Config configures a Connector. Fields are alphabetical.
type Config struct {
	// ChangeLogTable is the change-log table live sync reads. Default
	// "umbra_changelog".
	ChangeLogTable string
	// Classes maps object classes to tables. Required.
	Classes map[connector.ObjectClass]Table
	// DB is the database. Required. The connector does not close it.
	DB *sql.DB
	// Dialect of DB. Required.
	Dialect Dialect
	// LiveSync installs the change-log table and triggers at New and
	// makes the connector a connector.LiveSyncer.
	LiveSync bool
	// Logger receives the connector's logs. Default: discard.
	Logger *slog.Logger
	// PageSize is the search page size. Default 500.
	PageSize int
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// validate lists every problem of c, naming the field.
func (c *Config) validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("DB is nil"))
	}
	if c.Dialect != Postgres && c.Dialect != SQLite {
		errs = append(errs, fmt.Errorf("Dialect = %d: must be Postgres or SQLite", c.Dialect))
	}
	if len(c.Classes) == 0 {
		errs = append(errs, errors.New("Classes is empty"))
	}
	if c.ChangeLogTable != "" && !identRE.MatchString(c.ChangeLogTable) {
		errs = append(errs, fmt.Errorf("ChangeLogTable = %q: not a plain SQL identifier", c.ChangeLogTable))
	}
	if c.PageSize < 0 {
		errs = append(errs, fmt.Errorf("PageSize = %d: must not be negative", c.PageSize))
	}
	classes := make([]string, 0, len(c.Classes))
	for cl := range c.Classes {
		classes = append(classes, string(cl))
	}
	sort.Strings(classes)
	for _, cl := range classes {
		t := c.Classes[connector.ObjectClass(cl)]
		field := fmt.Sprintf("Classes[%q]", cl)
		if !identRE.MatchString(t.Name) {
			errs = append(errs, fmt.Errorf("%s.Name = %q: not a plain SQL identifier", field, t.Name))
		}
		if !identRE.MatchString(t.KeyColumn) || containsDot(t.KeyColumn) {
			errs = append(errs, fmt.Errorf("%s.KeyColumn = %q: not a plain SQL identifier", field, t.KeyColumn))
		}
		named := false
		for attr, col := range t.Columns {
			if attr == "" {
				errs = append(errs, fmt.Errorf("%s.Columns has an empty attribute name", field))
			}
			if !identRE.MatchString(col) || containsDot(col) {
				errs = append(errs, fmt.Errorf("%s.Columns[%q] = %q: not a plain SQL identifier", field, attr, col))
			}
			if col == t.KeyColumn {
				errs = append(errs, fmt.Errorf("%s.Columns[%q] maps the key column %q, which the database assigns", field, attr, col))
			}
			if col == t.NameColumn {
				named = true
			}
		}
		if !named {
			errs = append(errs, fmt.Errorf("%s.NameColumn = %q: not mapped in Columns", field, t.NameColumn))
		}
	}
	return errors.Join(errs...)
}

func containsDot(s string) bool {
	for i := range len(s) {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

func (c *Config) defaults() {
	if c.ChangeLogTable == "" {
		c.ChangeLogTable = "umbra_changelog"
	}
	if c.PageSize == 0 {
		c.PageSize = 500
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}
