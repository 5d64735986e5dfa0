package sqltable

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/umbra-idm/umbra/connector"
)

// Connector reaches tables through database/sql. It implements
// connector.Connector, connector.Searcher and connector.Tester, and
// connector.LiveSyncer when Config.LiveSync is set (see LiveSync). It is safe
// for concurrent use.
type Connector struct {
	db      *sql.DB
	dialect Dialect
	tables  map[connector.ObjectClass]*table
	cfg     Config
}

type table struct {
	name    string
	key     string
	nameCol string
	attrs   []string          // mapped attributes, sorted
	col     map[string]string // attribute → column
	attrOf  map[string]string // column → attribute
	selCols string            // key, then the mapped columns in attrs order
}

// New returns a connector for cfg. It fails, listing every problem, on an
// invalid configuration; with LiveSync it installs the change log and its
// triggers (idempotently) and fails when it cannot.
func New(ctx context.Context, cfg Config) (*Connector, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sqltable: invalid config: %w", err)
	}
	cfg.defaults()
	c := &Connector{db: cfg.DB, dialect: cfg.Dialect, tables: map[connector.ObjectClass]*table{}, cfg: cfg}
	for cl, t := range cfg.Classes {
		tb := &table{name: t.Name, key: t.KeyColumn, nameCol: t.NameColumn, col: map[string]string{}, attrOf: map[string]string{}}
		for a, col := range t.Columns {
			tb.attrs = append(tb.attrs, a)
			tb.col[a], tb.attrOf[col] = col, a
		}
		sort.Strings(tb.attrs)
		cols := []string{quote(tb.key)}
		for _, a := range tb.attrs {
			cols = append(cols, quote(tb.col[a]))
		}
		tb.selCols = strings.Join(cols, ", ")
		c.tables[cl] = tb
	}
	if cfg.Dialect == SQLite {
		if err := c.checkKeys(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.LiveSync {
		if err := c.installChangeLog(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// checkKeys refuses, on SQLite, a table whose KeyColumn is a plain INTEGER
// PRIMARY KEY: such a column is the rowid, and SQLite gives the key of the
// deleted row with the largest key to the next insert. A shadow of the
// deleted object, or a retried delete of it, would then reach a stranger's
// row. AUTOINCREMENT keys are never reused. A table that does not exist yet
// is not checked.
func (c *Connector) checkKeys(ctx context.Context) error {
	classes := make([]string, 0, len(c.tables))
	for cl := range c.tables {
		classes = append(classes, string(cl))
	}
	sort.Strings(classes)
	for _, cl := range classes {
		t := c.tables[connector.ObjectClass(cl)]
		schema, name := "main", t.name
		if i := strings.IndexByte(name, '.'); i >= 0 {
			schema, name = name[:i], name[i+1:]
		}
		var ddl string
		err := c.db.QueryRowContext(ctx, `SELECT sql FROM `+quote(schema)+`.sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&ddl)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return connector.NewError(connector.Classify(err), "new", fmt.Errorf("sqltable: reading the definition of table %s: %w", t.name, err))
		}
		rows, err := c.db.QueryContext(ctx, `SELECT name, type, pk FROM pragma_table_info(?, ?)`, name, schema)
		if err != nil {
			return connector.NewError(connector.Classify(err), "new", fmt.Errorf("sqltable: reading the columns of table %s: %w", t.name, err))
		}
		keys, rowidKey := 0, false
		for rows.Next() {
			var col, typ string
			var pk int
			if err := rows.Scan(&col, &typ, &pk); err != nil {
				rows.Close()
				return fmt.Errorf("sqltable: reading the columns of table %s: %w", t.name, err)
			}
			if pk > 0 {
				keys++
				rowidKey = rowidKey || (col == t.key && strings.EqualFold(typ, "INTEGER"))
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("sqltable: reading the columns of table %s: %w", t.name, err)
		}
		if keys == 1 && rowidKey && !strings.Contains(strings.ToUpper(ddl), "AUTOINCREMENT") {
			return fmt.Errorf("sqltable: invalid config: Classes[%q].KeyColumn %q of table %s is an INTEGER PRIMARY KEY without AUTOINCREMENT: "+
				"SQLite reuses such keys after a delete, and a UID must never be reused; declare it AUTOINCREMENT", cl, t.key, t.name)
		}
	}
	return nil
}

// quote quotes a validated identifier (possibly schema.table).
func quote(ident string) string {
	parts := strings.Split(ident, ".")
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	return strings.Join(parts, ".")
}

func (c *Connector) ph(n int) string {
	if c.dialect == Postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

func (c *Connector) table(op string, class connector.ObjectClass) (*table, error) {
	t := c.tables[class]
	if t == nil {
		return nil, connector.NewError(connector.CategorySchema, op, fmt.Errorf("unknown object class %q", class))
	}
	return t, nil
}

// values turns attrs into column values, refusing unknown attributes and
// several values.
func (t *table) values(op string, attrs connector.Attributes) (map[string]sql.NullString, error) {
	out := make(map[string]sql.NullString, len(attrs))
	for a, vals := range attrs {
		col, ok := t.col[a]
		if !ok {
			return nil, connector.NewError(connector.CategorySchema, op, fmt.Errorf("attribute %q is not mapped to a column of %s", a, t.name))
		}
		switch len(vals) {
		case 0:
			out[col] = sql.NullString{}
		case 1:
			out[col] = sql.NullString{String: vals[0], Valid: true}
		default:
			return nil, connector.NewError(connector.CategorySchema, op, fmt.Errorf("attribute %q has %d values; column %s holds one", a, len(vals), col))
		}
	}
	return out, nil
}

// checkText refuses, on PostgreSQL, a value its text columns cannot hold
// (invalid UTF-8, NUL) with a schema error naming the attribute, instead
// of the server's encoding error.
func (c *Connector) checkText(op string, t *table, vals map[string]sql.NullString) error {
	if c.dialect != Postgres {
		return nil
	}
	for col, v := range vals {
		if v.Valid && (!utf8.ValidString(v.String) || strings.ContainsRune(v.String, 0)) {
			return connector.NewError(connector.CategorySchema, op, fmt.Errorf(
				"attribute %q: value %.40q is not text (invalid UTF-8 or NUL), which PostgreSQL column %s.%s cannot hold",
				t.attrOf[col], v.String, t.name, col))
		}
	}
	return nil
}

// Add inserts a row and returns its key as UID.
func (c *Connector) Add(ctx context.Context, class connector.ObjectClass, attrs connector.Attributes) (connector.Result, error) {
	t, err := c.table("add", class)
	if err != nil {
		return connector.Result{}, err
	}
	vals, err := t.values("add", attrs)
	if err == nil {
		err = c.checkText("add", t, vals)
	}
	if err != nil {
		return connector.Result{}, err
	}
	name := vals[t.nameCol]
	if !name.Valid || name.String == "" {
		return connector.Result{}, connector.NewError(connector.CategorySchema, "add",
			fmt.Errorf("naming attribute %q is missing", t.attrOf[t.nameCol]))
	}
	cols := make([]string, 0, len(vals))
	for col := range vals {
		cols = append(cols, col)
	}
	sort.Strings(cols)
	qcols, phs, args := make([]string, len(cols)), make([]string, len(cols)), make([]any, len(cols))
	for i, col := range cols {
		qcols[i], phs[i], args[i] = quote(col), c.ph(i+1), vals[col]
	}
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) RETURNING %s", quote(t.name),
		strings.Join(qcols, ", "), strings.Join(phs, ", "), quote(t.key))
	var key string
	if err := c.db.QueryRowContext(ctx, q, args...).Scan(&key); err != nil {
		err = c.classify("add", err)
		if errors.Is(err, connector.ErrAlreadyExists) {
			var ce *connector.Error
			if errors.As(err, &ce) {
				ce.Existing = &connector.Identifiers{Name: name.String}
			}
		}
		return connector.Result{}, err
	}
	return connector.Result{ID: connector.Identifiers{UID: key, Name: name.String}}, nil
}

// where returns the condition and argument that find id: by key when the
// UID is set, else by name.
func (c *Connector) where(t *table, id connector.Identifiers, n int) (string, any, error) {
	switch {
	case id.UID != "":
		return quote(t.key) + " = " + c.ph(n), id.UID, nil
	case id.Name != "":
		return quote(t.nameCol) + " = " + c.ph(n), id.Name, nil
	}
	return "", nil, connector.NewError(connector.CategorySchema, "lookup", errors.New("no identifier"))
}

// Get reads one row.
func (c *Connector) Get(ctx context.Context, class connector.ObjectClass, id connector.Identifiers) (connector.Object, error) {
	t, err := c.table("get", class)
	if err != nil {
		return connector.Object{}, err
	}
	cond, arg, err := c.where(t, id, 1)
	if err != nil {
		return connector.Object{}, err
	}
	row := c.db.QueryRowContext(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s", t.selCols, quote(t.name), cond), arg)
	obj, err := t.scan(class, row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return connector.Object{}, connector.NewError(connector.CategoryNotFound, "get", fmt.Errorf("no row in %s for %s", t.name, describe(id)))
	}
	if err != nil {
		return connector.Object{}, c.classify("get", err)
	}
	return obj, nil
}

func describe(id connector.Identifiers) string {
	if id.UID != "" {
		return fmt.Sprintf("uid %q", id.UID)
	}
	return fmt.Sprintf("name %q", id.Name)
}

func (t *table) scan(class connector.ObjectClass, scan func(...any) error) (connector.Object, error) {
	var key string
	vals := make([]sql.NullString, len(t.attrs))
	dest := make([]any, 0, len(vals)+1)
	dest = append(dest, &key)
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	if err := scan(dest...); err != nil {
		return connector.Object{}, err
	}
	obj := connector.Object{Class: class, ID: connector.Identifiers{UID: key}, Attributes: connector.Attributes{}}
	for i, a := range t.attrs {
		if vals[i].Valid {
			obj.Attributes[a] = []string{vals[i].String}
			if t.col[a] == t.nameCol {
				obj.ID.Name = vals[i].String
			}
		}
	}
	return obj, nil
}

// Modify applies changes to one row in a transaction (read, apply, write),
// so that value adds and deletes see the row as it is. A change of the name
// column renames the object.
func (c *Connector) Modify(ctx context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
	t, err := c.table("modify", class)
	if err != nil {
		return connector.Result{}, err
	}
	for _, ch := range changes {
		if _, ok := t.col[ch.Name]; !ok {
			return connector.Result{}, connector.NewError(connector.CategorySchema, "modify", fmt.Errorf("attribute %q is not mapped to a column of %s", ch.Name, t.name))
		}
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return connector.Result{}, c.classify("modify", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	cond, arg, err := c.where(t, id, 1)
	if err != nil {
		return connector.Result{}, err
	}
	lock := ""
	if c.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	cur, err := t.scan(class, tx.QueryRowContext(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s%s", t.selCols, quote(t.name), cond, lock), arg).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return connector.Result{}, connector.NewError(connector.CategoryNotFound, "modify", fmt.Errorf("no row in %s for %s", t.name, describe(id)))
	}
	if err != nil {
		return connector.Result{}, c.classify("modify", err)
	}
	after := connector.ApplyChanges(cur.Attributes, changes)
	touched := map[string]connector.Attributes{}
	for _, ch := range changes {
		touched[ch.Name] = nil
	}
	set := connector.Attributes{}
	for a := range touched {
		set[a] = after[a]
	}
	vals, err := t.values("modify", set)
	if err == nil {
		err = c.checkText("modify", t, vals)
	}
	if err != nil {
		return connector.Result{}, err
	}
	if nv := vals[t.nameCol]; t.nameCol != "" && hasCol(vals, t.nameCol) && (!nv.Valid || nv.String == "") {
		return connector.Result{}, connector.NewError(connector.CategorySchema, "modify", fmt.Errorf("naming attribute %q cannot be removed", t.attrOf[t.nameCol]))
	}
	cols := make([]string, 0, len(vals))
	for col := range vals {
		cols = append(cols, col)
	}
	sort.Strings(cols)
	sets, args := make([]string, len(cols)), make([]any, 0, len(cols)+1)
	for i, col := range cols {
		sets[i] = quote(col) + " = " + c.ph(i+1)
		args = append(args, vals[col])
	}
	res := connector.Result{ID: cur.ID}
	if len(cols) > 0 {
		args = append(args, cur.ID.UID)
		q := fmt.Sprintf("UPDATE %s SET %s WHERE %s = %s", quote(t.name), strings.Join(sets, ", "), quote(t.key), c.ph(len(cols)+1))
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return connector.Result{}, c.classify("modify", err)
		}
		if nv, ok := vals[t.nameCol]; ok && nv.Valid {
			res.ID.Name = nv.String
		}
	}
	if err := tx.Commit(); err != nil {
		return connector.Result{}, c.classify("modify", err)
	}
	return res, nil
}

func hasCol(vals map[string]sql.NullString, col string) bool {
	_, ok := vals[col]
	return ok
}

// Delete deletes one row.
func (c *Connector) Delete(ctx context.Context, class connector.ObjectClass, id connector.Identifiers) (connector.Result, error) {
	t, err := c.table("delete", class)
	if err != nil {
		return connector.Result{}, err
	}
	cond, arg, err := c.where(t, id, 1)
	if err != nil {
		return connector.Result{}, err
	}
	r, err := c.db.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s", quote(t.name), cond), arg)
	if err != nil {
		return connector.Result{}, c.classify("delete", err)
	}
	if n, err := r.RowsAffected(); err == nil && n == 0 {
		return connector.Result{}, connector.NewError(connector.CategoryNotFound, "delete", fmt.Errorf("no row in %s for %s", t.name, describe(id)))
	}
	return connector.Result{}, nil
}

// Search reads rows in key order, a page at a time (keyset paging).
func (c *Connector) Search(ctx context.Context, class connector.ObjectClass, opts connector.SearchOptions, fn func(connector.Object) error) error {
	t, err := c.table("search", class)
	if err != nil {
		return err
	}
	if opts.Name != "" {
		obj, err := c.Get(ctx, class, connector.Identifiers{Name: opts.Name})
		if errors.Is(err, connector.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(obj)
	}
	size := opts.PageSize
	if size <= 0 {
		size = c.cfg.PageSize
	}
	after, first := "", true
	for {
		cond, args := "", []any{}
		if !first {
			cond, args = fmt.Sprintf("WHERE %s > %s ", quote(t.key), c.ph(1)), []any{after}
		}
		q := fmt.Sprintf("SELECT %s FROM %s %sORDER BY %s LIMIT %d", t.selCols, quote(t.name), cond, quote(t.key), size)
		page, err := c.page(ctx, t, class, q, args)
		if err != nil {
			return err
		}
		for _, obj := range page {
			if err := fn(obj); err != nil {
				return err
			}
		}
		if len(page) < size {
			return nil
		}
		after, first = page[len(page)-1].ID.UID, false
	}
}

func (c *Connector) page(ctx context.Context, t *table, class connector.ObjectClass, q string, args []any) ([]connector.Object, error) {
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, c.classify("search", err)
	}
	defer rows.Close()
	var out []connector.Object
	for rows.Next() {
		obj, err := t.scan(class, rows.Scan)
		if err != nil {
			return nil, c.classify("search", err)
		}
		out = append(out, obj)
	}
	if err := rows.Err(); err != nil {
		return nil, c.classify("search", err)
	}
	return out, nil
}

// Test pings the database.
func (c *Connector) Test(ctx context.Context) error {
	if err := c.db.PingContext(ctx); err != nil {
		return c.classify("test", err)
	}
	return nil
}

// classify maps a database error to a category without importing the
// drivers: PostgreSQL errors expose SQLState(), SQLite errors Code().
func (c *Connector) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connector.Error
	if errors.As(err, &ce) {
		return err
	}
	cat := connector.Classify(err)
	var pg interface{ SQLState() string }
	var lite interface{ Code() int }
	switch {
	case errors.Is(err, driver.ErrBadConn):
		// Drivers are meant to return it only before sending, but pgx's
		// also follows a "conn closed" after a statement went out: the
		// outcome is unknown, and the engine reads before retrying.
		cat = connector.CategoryOutcomeUnknown
	case errors.As(err, &pg):
		cat = pgCategory(pg.SQLState())
	case errors.As(err, &lite):
		cat = sqliteCategory(lite.Code(), err.Error())
	}
	if cat == connector.CategoryGeneric {
		// A lost connection leaves the outcome unknown. Not "not sent",
		// even when pgx says SafeToRetry: its "conn closed" also comes
		// after a statement (a COMMIT) went out and took effect.
		var retry interface{ SafeToRetry() bool }
		if errors.As(err, &retry) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			cat = connector.CategoryOutcomeUnknown
		}
	}
	return connector.NewError(cat, op, err)
}

func pgCategory(state string) connector.Category {
	switch {
	case state == "23505":
		return connector.CategoryAlreadyExists
	case strings.HasPrefix(state, "23"), strings.HasPrefix(state, "22"):
		return connector.CategorySchema
	case state == "42501":
		return connector.CategoryPermission
	case strings.HasPrefix(state, "42"), strings.HasPrefix(state, "3F"), strings.HasPrefix(state, "28"), state == "3D000":
		return connector.CategoryConfiguration
	case state == "40001", state == "40P01", strings.HasPrefix(state, "53"), state == "55P03":
		return connector.CategoryThrottled
	case state == "08001", state == "08004", state == "57P03":
		return connector.CategoryNotSent
	case strings.HasPrefix(state, "08"), strings.HasPrefix(state, "57"):
		return connector.CategoryOutcomeUnknown
	}
	return connector.CategoryGeneric
}

func sqliteCategory(code int, msg string) connector.Category {
	switch {
	case code == 2067 || code == 1555: // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY
		return connector.CategoryAlreadyExists
	case code&0xff == 19: // SQLITE_CONSTRAINT
		return connector.CategorySchema
	case code&0xff == 5 || code&0xff == 6: // SQLITE_BUSY, SQLITE_LOCKED
		return connector.CategoryThrottled
	case code&0xff == 3 || code&0xff == 8: // SQLITE_PERM, SQLITE_READONLY
		return connector.CategoryPermission
	case code&0xff == 1 && (strings.Contains(msg, "no such table") || strings.Contains(msg, "no such column")):
		return connector.CategoryConfiguration
	}
	return connector.CategoryGeneric
}
