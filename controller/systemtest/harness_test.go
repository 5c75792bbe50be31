package systemtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kluis/backend/api/apiclient"
	"kluis/deploy/dev/browsertest"
	"kluis/deploy/dev/procrun"
)

// binDir holds the binaries TestMain built.
var binDir string

// maxWorlds is how many tests run their world at once: each has its own
// database, backend (a pool of up to 10 PostgreSQL connections; two for
// the replica tests), broker ports and processes, and the PostgreSQL
// server's 100 connections are shared with every other test.
const maxWorlds = 2

// worlds holds a place for each test running its world.
var worlds = make(chan struct{}, maxWorlds)

// parallelWorld runs t in parallel with the package's other tests, at
// most maxWorlds at once whatever go test's -parallel.
func parallelWorld(t *testing.T) {
	t.Parallel()
	worlds <- struct{}{}
	t.Cleanup(func() { <-worlds })
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kluis-systemtest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// raceEnabled: -race shares the build cache with go test -race.
	if err := procrun.Build(context.Background(), dir, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		return 1
	}
	binDir = dir
	code := m.Run()
	// Stops the Chromium the browser tests share (browsertest.Linger).
	browsertest.Close()
	return code
}

// proc is a child process with its output in a log file.
type proc = procrun.Proc

// startProc starts bin (of binDir) with args and env (added to a clean
// base environment) and logs its output to dir/name.log (appending across
// restarts). stdout, when not nil, also receives the process's stdout.
// The process is stopped when owner ends (t may be a subtest of owner).
func startProc(t, owner *testing.T, dir, name, bin string, args, env []string, stdout io.Writer) *proc {
	t.Helper()
	p := procrun.New(dir, name, filepath.Join(binDir, bin), args, env, stdout)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() { p.Stop(10 * time.Second) })
	return p
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var httpc = &http.Client{Timeout: 20 * time.Second}

// doJSON is apiclient.DoJSON with this package's HTTP client.
func doJSON(ctx context.Context, method, u, bearer string, in, out any) error {
	return apiclient.DoJSON(ctx, httpc, method, u, bearer, in, out)
}

// api is the backend's REST API as one user.
type api = apiclient.Session

func login(ctx context.Context, base, user, pass string) (api, error) {
	return apiclient.Login(ctx, httpc, base, user, pass)
}

// maxAudit bounds the audit records a test reads about one subject.
const maxAudit = 40000

// document is the backend's document.
type document = apiclient.Document

type compartment struct {
	ID      int64 `json:"id"`
	Number  int   `json:"number"`
	Board   int   `json:"board"`
	Channel int   `json:"channel"`
}
