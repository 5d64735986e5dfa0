package livesync_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// genConn is a resource that outlives a killed process: its change stream is
// a function of the position, so every process sees the same stream. It
// has precise tokens (the decimal position after a change). Objects live in
// slots; a slot's object is created, modified, deleted and created again
// with a new UID as the stream goes on.
type genConn struct {
	n, slots int
	changes  []connector.Change
}

func newGenConn(n, slots int) *genConn {
	g := &genConn{n: n, slots: slots, changes: make([]connector.Change, n)}
	gen := make([]int, slots)
	alive := make([]bool, slots)
	for i := 1; i <= n; i++ {
		j := (i * 7) % slots
		if i <= slots {
			j = i - 1
		}
		ch := connector.Change{Class: class, Token: tok(i)}
		name := "s" + strconv.Itoa(j)
		switch {
		case !alive[j]:
			gen[j]++
			alive[j] = true
			ch.Type = connector.ChangeCreate
		case i%11 == 0:
			alive[j] = false
			ch.Type = connector.ChangeDelete
		default:
			ch.Type = connector.ChangeModify
		}
		ch.ID = connector.Identifiers{UID: fmt.Sprintf("%s-g%d", name, gen[j]), Name: name}
		if ch.Type != connector.ChangeDelete {
			ch.Object = connector.Attributes{"uid": {name}, "v": {strconv.Itoa(i)}}
		}
		g.changes[i-1] = ch
	}
	return g
}

// objects returns the resource's objects at the end of the stream.
func (g *genConn) objects() []connector.Object {
	last := map[string]connector.Change{}
	for _, ch := range g.changes {
		last[ch.ID.Name] = ch
	}
	var out []connector.Object
	for _, ch := range last {
		if ch.Type != connector.ChangeDelete {
			out = append(out, connector.Object{Class: class, ID: ch.ID, Attributes: ch.Object})
		}
	}
	return out
}

func (g *genConn) Add(context.Context, connector.ObjectClass, connector.Attributes) (connector.Result, error) {
	return connector.Result{}, errors.New("genConn: read only")
}
func (g *genConn) Modify(context.Context, connector.ObjectClass, connector.Identifiers, []connector.AttributeDelta) (connector.Result, error) {
	return connector.Result{}, errors.New("genConn: read only")
}
func (g *genConn) Delete(context.Context, connector.ObjectClass, connector.Identifiers) (connector.Result, error) {
	return connector.Result{}, errors.New("genConn: read only")
}
func (g *genConn) Get(context.Context, connector.ObjectClass, connector.Identifiers) (connector.Object, error) {
	return connector.Object{}, connector.NewError(connector.CategoryGeneric, "get", errors.New("genConn: changes carry their objects"))
}
func (g *genConn) PreciseTokens() bool { return true }
func (g *genConn) LatestToken(context.Context, connector.ObjectClass) (connector.Token, error) {
	return tok(g.n), nil
}
func (g *genConn) FetchChanges(_ context.Context, _ connector.ObjectClass, from connector.Token, max int) (connector.ChangeBatch, error) {
	pos := 0
	if from != "" {
		var err error
		if pos, err = strconv.Atoi(string(from)); err != nil {
			return connector.ChangeBatch{}, connector.NewError(connector.CategorySchema, "fetch", err)
		}
	}
	if max <= 0 || max > 25 {
		max = 25
	}
	end := min(g.n, pos+max)
	b := connector.ChangeBatch{Token: tok(end), More: end < g.n}
	for _, ch := range g.changes[pos:end] {
		ch.Object = ch.Object.Clone()
		b.Changes = append(b.Changes, ch)
	}
	return b, nil
}

const (
	crashChanges = 1500
	crashSlots   = 40
)

// TestMain runs the crash test's child when TestCrashSQLite starts this
// binary again for it, and the tests otherwise.
func TestMain(m *testing.M) {
	if dir := os.Getenv("UMBRA_LIVESYNC_CRASH_DIR"); dir != "" {
		variant, _ := strconv.Atoi(os.Getenv("UMBRA_LIVESYNC_CRASH_VARIANT"))
		if err := crashChild(dir, variant); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild runs live sync over the SQLite database in dir until the stream
// is done, writing every delivery to the file "delivered".
func crashChild(dir string, variant int) error {
	ctx := context.Background()
	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "umbra.db"), sqlstore.Options{})
	if err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(dir, "delivered"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	task, err := livesync.New(livesync.Config{
		ResourceID:         "res",
		Class:              class,
		Connector:          newGenConn(crashChanges, crashSlots),
		Store:              st,
		Tokens:             st,
		StartFromBeginning: true,
		GroupCommit:        []int{1, 7, 1, 3}[variant%4],
		Workers:            []int{1, 1, 3, 1}[variant%4],
		Handler: func(_ context.Context, ev livesync.Event) error {
			// Some work, then the delivery, written straight to the
			// file (it survives SIGKILL).
			time.Sleep(100 * time.Microsecond)
			_, err := log.WriteString(string(ev.Change.Token) + "\n")
			return err
		},
	})
	if err != nil {
		return err
	}
	fmt.Println("started")
	for {
		res, err := task.Run(ctx)
		if err != nil {
			return err
		}
		if res.TokenAfter == tok(crashChanges) {
			fmt.Println("done")
			return nil
		}
	}
}

// TestCrashSQLite kills processes running live sync over SQLite at random
// points, then lets one finish: every change must have reached the handler
// at least once, and the shadows must mirror the resource.
func TestCrashSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: starts and kills child processes")
	}
	t.Parallel()
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill times seeded with %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	kills := 0
	start := func(variant int) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "UMBRA_LIVESYNC_CRASH_DIR="+dir, "UMBRA_LIVESYNC_CRASH_VARIANT="+strconv.Itoa(variant))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "started" {
				return cmd, sc
			}
		}
		cmd.Wait()
		t.Fatalf("child ended before it started: %v", sc.Err())
		return nil, nil
	}
	for attempt := 0; kills < 20; attempt++ {
		if attempt >= 60 {
			t.Fatalf("only %d kills in 60 children: the stream ends too soon", kills)
		}
		cmd, _ := start(attempt)
		time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err == nil {
			if err := cmd.Wait(); err != nil && strings.Contains(err.Error(), "killed") {
				kills++
				continue
			}
		}
		cmd.Wait()
	}
	cmd, sc := start(kills)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final child: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if len(lines) == 0 || lines[len(lines)-1] != "done" {
		t.Fatalf("final child did not finish the stream: %q", lines)
	}

	data, err := os.ReadFile(filepath.Join(dir, "delivered"))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int]int)
	for _, l := range strings.Split(string(data), "\n") {
		if n, err := strconv.Atoi(l); err == nil {
			seen[n]++
		}
	}
	dups := 0
	for i := 1; i <= crashChanges; i++ {
		if seen[i] == 0 {
			t.Fatalf("change %d never reached the handler (after %d kills)", i, kills)
		}
		dups += seen[i] - 1
	}
	t.Logf("%d kills; %d changes, %d deliveries repeated", kills, crashChanges, dups)

	st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(dir, "umbra.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, err := st.List(context.Background(), shadow.Query{ResourceID: "res", Class: class})
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]*shadow.Shadow{}
	for _, s := range list {
		if s.Live() {
			if live[s.UID] != nil {
				t.Fatalf("two live shadows of %s", s.UID)
			}
			live[s.UID] = s
		}
	}
	assertMirror(t, live, newGenConn(crashChanges, crashSlots).objects())
}
