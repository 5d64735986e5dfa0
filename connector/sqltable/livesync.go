package sqltable

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/umbra-idm/umbra/connector"
)

// LiveSync is the connector with its change stream: what New returns,
// seen through connector.LiveSyncer. Use AsLiveSyncer to get it.
type LiveSync struct{ *Connector }

// AsLiveSyncer returns c as a connector.LiveSyncer, or false when
// Config.LiveSync was off.
func (c *Connector) AsLiveSyncer() (*LiveSync, bool) {
	if !c.cfg.LiveSync {
		return nil, false
	}
	return &LiveSync{c}, true
}

// PreciseTokens is true: every change has its own token.
func (l *LiveSync) PreciseTokens() bool { return true }

// token is a position in the change log: the transaction (PostgreSQL; 0 on
// SQLite) and the sequence number of the last change read.
type token struct {
	xid uint64
	seq int64
}

func (c *Connector) parseToken(tok connector.Token) (token, error) {
	if tok == "" {
		return token{}, nil
	}
	bad := connector.NewError(connector.CategorySchema, "fetch", fmt.Errorf("malformed token %q: want %s", string(tok), c.tokenForm()))
	s := string(tok)
	var t token
	var err error
	if c.dialect == Postgres {
		x, q, ok := strings.Cut(s, ":")
		if !ok {
			return token{}, bad
		}
		if t.xid, err = strconv.ParseUint(x, 10, 64); err != nil {
			return token{}, bad
		}
		s = q
	}
	if t.seq, err = strconv.ParseInt(s, 10, 64); err != nil || t.seq < 0 {
		return token{}, bad
	}
	return t, nil
}

func (c *Connector) tokenForm() string {
	if c.dialect == Postgres {
		return "<transaction id>:<sequence>"
	}
	return "<sequence>"
}

func (c *Connector) format(t token) connector.Token {
	if c.dialect == Postgres {
		return connector.Token(strconv.FormatUint(t.xid, 10) + ":" + strconv.FormatInt(t.seq, 10))
	}
	return connector.Token(strconv.FormatInt(t.seq, 10))
}

// LatestToken returns the position after the last committed change.
func (l *LiveSync) LatestToken(ctx context.Context, class connector.ObjectClass) (connector.Token, error) {
	t, err := l.table("token", class)
	if err != nil {
		return "", err
	}
	if l.dialect == Postgres {
		// "Now" includes transactions that have committed but are still
		// newer than the oldest one running: wait until every transaction
		// running at the call has ended, so that no change committed
		// before the call lies after the returned token.
		var horizon string
		if err := l.db.QueryRowContext(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`).Scan(&horizon); err != nil {
			return "", l.classify("token", err)
		}
		for {
			var passed bool
			if err := l.db.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8`, horizon).Scan(&passed); err != nil {
				return "", l.classify("token", err)
			}
			if passed {
				break
			}
			select {
			case <-ctx.Done():
				return "", connector.NewError(connector.CategoryOutcomeUnknown, "token", ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	var q string
	if l.dialect == Postgres {
		q = fmt.Sprintf(`SELECT COALESCE(MAX(xid)::text, '0'), COALESCE(MAX(seq), 0) FROM %s
			WHERE tbl = $1 AND xid = (SELECT MAX(xid) FROM %[1]s WHERE tbl = $1 AND xid < pg_snapshot_xmin(pg_current_snapshot()))`,
			quote(l.cfg.ChangeLogTable))
	} else {
		q = fmt.Sprintf(`SELECT '0', COALESCE(MAX(seq), 0) FROM %s WHERE tbl = ?`, quote(l.cfg.ChangeLogTable))
	}
	var xs string
	var tok token
	if err := l.db.QueryRowContext(ctx, q, t.name).Scan(&xs, &tok.seq); err != nil {
		return "", l.classify("token", err)
	}
	tok.xid, _ = strconv.ParseUint(xs, 10, 64)
	return l.format(tok), nil
}

// FetchChanges returns up to max changes after from, oldest first.
func (l *LiveSync) FetchChanges(ctx context.Context, class connector.ObjectClass, from connector.Token, max int) (connector.ChangeBatch, error) {
	t, err := l.table("fetch", class)
	if err != nil {
		return connector.ChangeBatch{}, err
	}
	pos, err := l.parseToken(from)
	if err != nil {
		return connector.ChangeBatch{}, err
	}
	if max <= 0 {
		max = l.cfg.PageSize
	}
	var q string
	var args []any
	if l.dialect == Postgres {
		q = fmt.Sprintf(`SELECT xid::text, seq, op, key, name FROM %s
			WHERE tbl = $1 AND (xid > $2::text::xid8 OR (xid = $2::text::xid8 AND seq > $3))
			  AND xid < pg_snapshot_xmin(pg_current_snapshot())
			ORDER BY xid, seq LIMIT %d`, quote(l.cfg.ChangeLogTable), max+1)
		args = []any{t.name, strconv.FormatUint(pos.xid, 10), pos.seq}
	} else {
		q = fmt.Sprintf(`SELECT '0', seq, op, key, name FROM %s WHERE tbl = ? AND seq > ? ORDER BY seq LIMIT %d`,
			quote(l.cfg.ChangeLogTable), max+1)
		args = []any{t.name, pos.seq}
	}
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return connector.ChangeBatch{}, l.classify("fetch", err)
	}
	defer rows.Close()
	batch := connector.ChangeBatch{Token: l.format(pos)}
	for rows.Next() {
		var xs, op, key string
		var name *string
		var tok token
		if err := rows.Scan(&xs, &tok.seq, &op, &key, &name); err != nil {
			return connector.ChangeBatch{}, l.classify("fetch", err)
		}
		if len(batch.Changes) == max {
			batch.More = true
			break
		}
		tok.xid, _ = strconv.ParseUint(xs, 10, 64)
		ch := connector.Change{Class: class, ID: connector.Identifiers{UID: key}, Token: l.format(tok)}
		if name != nil {
			ch.ID.Name = *name
		}
		switch op {
		case "I":
			ch.Type = connector.ChangeCreate
		case "U":
			ch.Type = connector.ChangeModify
		case "D":
			ch.Type = connector.ChangeDelete
		default:
			return connector.ChangeBatch{}, connector.NewError(connector.CategorySchema, "fetch",
				fmt.Errorf("change log row %d has unknown operation %q", tok.seq, op))
		}
		batch.Changes = append(batch.Changes, ch)
		batch.Token = ch.Token
	}
	if err := rows.Err(); err != nil {
		return connector.ChangeBatch{}, l.classify("fetch", err)
	}
	return batch, nil
}

// installChangeLog creates the change-log table and a trigger per mapped
// table, idempotently.
func (c *Connector) installChangeLog(ctx context.Context) error {
	log := quote(c.cfg.ChangeLogTable)
	var stmts []string
	names := make([]string, 0, len(c.tables))
	byName := map[string]*table{}
	for _, t := range c.tables {
		names = append(names, t.name)
		byName[t.name] = t
	}
	sort.Strings(names)
	if c.dialect == Postgres {
		stmts = append(stmts, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			seq bigserial PRIMARY KEY, xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
			tbl text NOT NULL, op char(1) NOT NULL, key text NOT NULL, name text)`, log),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (tbl, xid, seq)`, quote(c.cfg.ChangeLogTable+"_pos"), log))
		for _, n := range names {
			t := byName[n]
			fn := quote(strings.ReplaceAll(c.cfg.ChangeLogTable+"_"+n, ".", "_") + "_fn")
			stmts = append(stmts, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO %s (tbl, op, key, name) VALUES (%s, 'D', OLD.%s::text, OLD.%s::text);
    RETURN OLD;
  END IF;
  INSERT INTO %[2]s (tbl, op, key, name) VALUES (%[3]s, substr(TG_OP, 1, 1), NEW.%[4]s::text, NEW.%[5]s::text);
  RETURN NEW;
END $f$`, fn, log, sqlString(n), quote(t.key), quote(t.nameCol)),
				// Replaced in place (PostgreSQL 14+): never a moment without
				// the trigger, in which a write would miss the change log.
				fmt.Sprintf(`CREATE OR REPLACE TRIGGER umbra_changelog AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()`, quote(n), fn))
		}
	} else {
		stmts = append(stmts, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL, key TEXT NOT NULL, name TEXT)`, log),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (tbl, seq)`, quote(c.cfg.ChangeLogTable+"_pos"), log))
		for _, n := range names {
			t := byName[n]
			for _, ev := range []struct{ when, op, row string }{{"INSERT", "I", "NEW"}, {"UPDATE", "U", "NEW"}, {"DELETE", "D", "OLD"}} {
				trig := quote(strings.ReplaceAll("umbra_"+n+"_"+strings.ToLower(ev.when), ".", "_"))
				stmts = append(stmts, fmt.Sprintf(`CREATE TRIGGER IF NOT EXISTS %s AFTER %s ON %s FOR EACH ROW BEGIN
  INSERT INTO %s (tbl, op, key, name) VALUES (%s, '%s', CAST(%s.%s AS TEXT), CAST(%s.%s AS TEXT));
END`, trig, ev.when, quote(n), log, sqlString(n), ev.op, ev.row, quote(t.key), ev.row, quote(t.nameCol)))
			}
		}
	}
	// One transaction, and on PostgreSQL one installer at a time, so that
	// processes starting together do not trip over each other's DDL.
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqltable: installing the change log: %w", c.classify("install", err))
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if c.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('umbra sqltable change log'))`); err != nil {
			return fmt.Errorf("sqltable: installing the change log: %w", c.classify("install", err))
		}
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("sqltable: installing the change log: %w", c.classify("install", err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqltable: installing the change log: %w", c.classify("install", err))
	}
	return nil
}

// sqlString quotes a validated identifier as an SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

var _ connector.LiveSyncer = (*LiveSync)(nil)
