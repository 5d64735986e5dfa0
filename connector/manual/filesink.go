package manual

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/clock"
)

// FileSink keeps tickets as files in one folder: T000000001.json,
// T000000002.json, ... one indented JSON document each (see Ticket), so a
// person can read a ticket and close it by editing "status" to "done" or
// "rejected" (with a "reason"), or with MarkDone and Reject.
//
// Tickets are written to a temporary file and linked into place, so a
// reader never sees half a ticket, and two processes sharing the folder
// never take the same reference. A folder that cannot be read or written
// fails with connector.CategoryNotSent (nothing was made or read; the engine
// tries again later); a ticket file that is not valid JSON with
// CategorySchema. Files are readable by their owner only
// (0600, folder 0700), since tickets carry account data. A FileSink is safe
// for concurrent use.
type FileSink struct {
	dir   string
	clock clock.Clock

	mu   sync.Mutex
	last int // highest sequence seen or taken
}

var refPattern = regexp.MustCompile(`^T[0-9]{9,}$`)

// NewFileSink returns a sink keeping tickets in dir, which it creates when
// missing. A nil clock is the wall clock (used for ClosedAt).
func NewFileSink(dir string, c connector.Clock) (*FileSink, error) {
	if dir == "" {
		return nil, errors.New("manual: file sink: empty folder name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("manual: file sink: %w", err)
	}
	return &FileSink{dir: dir, clock: clock.Or(c)}, nil
}

// Dir returns the sink's folder.
func (s *FileSink) Dir() string { return s.dir }

func (s *FileSink) path(ref string) (string, error) {
	if !refPattern.MatchString(ref) {
		return "", fmt.Errorf("manual: ticket %q: not a file sink reference: %w", ref, ErrNoTicket)
	}
	return filepath.Join(s.dir, ref+".json"), nil
}

// Create writes t as a new open ticket and returns its reference.
func (s *FileSink) Create(ctx context.Context, t Ticket) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	t = t.Clone()
	t.Status, t.Reason = StatusOpen, ""
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == 0 {
		seqs, err := s.sequences()
		if err != nil {
			return "", err
		}
		if len(seqs) > 0 {
			s.last = seqs[len(seqs)-1]
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		s.last++
		t.Ref = fmt.Sprintf("T%09d", s.last)
		err := s.write(t, false)
		if errors.Is(err, fs.ErrExist) {
			continue // another process took it
		}
		if err != nil {
			return "", err
		}
		return t.Ref, nil
	}
}

// write stores t in its file: through a temporary file linked into place
// (failing with fs.ErrExist when the file exists), or renamed over it when
// replace is true.
func (s *FileSink) write(t Ticket, replace bool) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("manual: encoding ticket %s: %w", t.Ref, err)
	}
	data = append(data, '\n')
	final := filepath.Join(s.dir, t.Ref+".json")
	tmp, err := os.CreateTemp(s.dir, ".ticket-*.tmp")
	if err != nil {
		return notMade(t.Ref, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return notMade(t.Ref, werr)
	}
	if replace {
		err = os.Rename(tmp.Name(), final)
	} else {
		err = os.Link(tmp.Name(), final)
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if err != nil {
		return notMade(t.Ref, err)
	}
	return nil
}

// notMade reports a ticket file that could not be written: the ticket
// certainly does not exist (the final name is linked or renamed only after
// a complete write), so the failure is CategoryNotSent and the engine tries
// again later.
func notMade(ref string, err error) error {
	return connector.NewError(connector.CategoryNotSent, "write ticket", fmt.Errorf("ticket %s: %w", ref, err))
}

// Status reads ticket ref.
func (s *FileSink) Status(ctx context.Context, ref string) (Ticket, error) {
	if err := ctx.Err(); err != nil {
		return Ticket{}, err
	}
	p, err := s.path(ref)
	if err != nil {
		return Ticket{}, err
	}
	return readTicket(p, ref)
}

func readTicket(p, ref string) (Ticket, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Ticket{}, fmt.Errorf("manual: ticket %q: %w", ref, ErrNoTicket)
	}
	if err != nil {
		return Ticket{}, connector.NewError(connector.CategoryNotSent, "read ticket", fmt.Errorf("ticket %q: %w", ref, err))
	}
	var t Ticket
	if err := json.Unmarshal(data, &t); err != nil {
		return Ticket{}, connector.NewError(connector.CategorySchema, "read ticket",
			fmt.Errorf("ticket %q (%s) is not valid JSON: %w", ref, p, err))
	}
	t.Ref = ref // the file name is the reference, whatever the text says
	return t, nil
}

// List reads every ticket, in creation order.
func (s *FileSink) List(ctx context.Context) ([]Ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seqs, err := s.sequences()
	if err != nil {
		return nil, err
	}
	out := make([]Ticket, 0, len(seqs))
	for _, n := range seqs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ref := fmt.Sprintf("T%09d", n)
		t, err := readTicket(filepath.Join(s.dir, ref+".json"), ref)
		if errors.Is(err, ErrNoTicket) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// sequences returns the sequence numbers of the tickets in the folder,
// ascending.
func (s *FileSink) sequences() ([]int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, connector.NewError(connector.CategoryNotSent, "list tickets", fmt.Errorf("folder %s: %w", s.dir, err))
	}
	var seqs []int
	for _, e := range entries {
		ref, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || !refPattern.MatchString(ref) {
			continue
		}
		if n, err := strconv.Atoi(ref[1:]); err == nil {
			seqs = append(seqs, n)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// Close closes open ticket ref as r says, as the person working it would,
// and stamps ClosedAt with the sink's clock. It fails for an unknown ref
// (ErrNoTicket), a ticket already closed, or a status other than done or
// rejected.
func (s *FileSink) Close(ctx context.Context, ref string, r Resolution) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(ref)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := readTicket(p, ref)
	if err != nil {
		return err
	}
	if err := closeTicket(&t, r, s.clock.Now()); err != nil {
		return err
	}
	return s.write(t, true)
}

// MarkDone marks ticket ref in folder dir done: the helper behind a "done"
// command of an operator's tool.
func MarkDone(dir, ref string) error {
	s, err := NewFileSink(dir, nil)
	if err != nil {
		return err
	}
	return s.Close(context.Background(), ref, Resolution{Status: StatusDone})
}

// Reject marks ticket ref in folder dir rejected for reason, a policy
// failure for the engine. Use FileSink.Close to give another cause.
func Reject(dir, ref, reason string) error {
	s, err := NewFileSink(dir, nil)
	if err != nil {
		return err
	}
	return s.Close(context.Background(), ref, Resolution{Status: StatusRejected, Reason: reason})
}
