package systemtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kluis/backend/api/apiclient"
)

// binDir holds the binaries TestMain built.
var binDir string

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
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		return 1
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race") // shares the build cache with go test -race
	}
	args = append(args, "./cmd/kluis-backend", "./cmd/kluis-sim", "./cmd/kluisd")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "systemtest: go build: %v\n%s\n", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 10; i++ {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		d = filepath.Dir(d)
	}
	return "", errors.New("go.mod not found above the working directory")
}

// proc is a child process with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProc starts bin with args and env (added to a clean base
// environment) and logs its output to dir/name.log (appending across
// restarts). stdout, when not nil, also receives the process's stdout.
// The process is stopped when owner ends (t may be a subtest of owner).
func startProc(t, owner *testing.T, dir, name, bin string, args, env []string, stdout io.Writer) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== start %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}, env...)
	cmd.Stderr = f
	cmd.Stdout = f
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(f, stdout)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	owner.Cleanup(func() { p.stop(10 * time.Second) })
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// tail returns the last n bytes of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
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

// lineWriter hands the first line starting with prefix to a channel.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	prefix string
	ch     chan string
	sent   bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	sc := bufio.NewScanner(bytes.NewReader(w.buf))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), w.prefix) && bytes.Contains(w.buf, []byte(sc.Text()+"\n")) {
			w.sent = true
			w.ch <- sc.Text()
			w.buf = nil
			break
		}
	}
	return len(p), nil
}
