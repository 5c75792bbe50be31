// Package procrun runs the project's built binaries as child processes for
// the system tests (controller/systemtest) and the gauntlet (bench/chaos):
// build them once ([Build]), start one with its output appended to a log
// file ([Proc]), read a ready line from its output ([LineWriter]), stop or
// kill it and read the end of its log.
package procrun

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the commands the system tests and the gauntlet run.
var Binaries = []string{"./cmd/kluis-backend", "./cmd/kluis-sim", "./cmd/kluisd"}

// ModuleRoot finds the directory of go.mod above the working directory.
func ModuleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		d = filepath.Dir(d)
	}
	return "", errors.New("procrun: go.mod not found above the working directory")
}

// Build compiles pkgs (default Binaries) of the module that holds the
// working directory into dir, with -race when race is true (sharing the
// build cache with go test -race).
func Build(ctx context.Context, dir string, race bool, pkgs ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		pkgs = Binaries
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("procrun: go build: %w\n%s", err, out)
	}
	return nil
}

// Proc is a child process with its output in a log file. Start it again
// after a stop or a kill with Start: the log grows across runs, each run
// after a "=== start" line.
type Proc struct {
	// Name names the process in messages and its log file (Name.log).
	Name string
	bin  string
	args []string
	env  []string
	log  string
	out  io.Writer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// New describes a process that runs bin with args and env (added to a
// clean base environment: PATH, HOME, TMPDIR) and logs its output to
// dir/name.log; stdout, when not nil, also receives its standard output.
// It is not started.
func New(dir, name, bin string, args, env []string, stdout io.Writer) *Proc {
	return &Proc{Name: name, bin: bin, args: args, env: env, log: filepath.Join(dir, name+".log"), out: stdout}
}

// Start starts the process (again), its output appended to its log. The
// process is killed when the calling process dies (Pdeathsig).
func (p *Proc) Start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== start %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}, p.env...)
	cmd.Stderr = f
	cmd.Stdout = f
	if p.out != nil {
		cmd.Stdout = io.MultiWriter(f, p.out)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Pid is the process id of the current run (0 when never started).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop sends SIGTERM and waits up to grace, then SIGKILL.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.Kill()
	}
}

// Kill sends SIGKILL and waits (up to 10 s) for the process to be gone.
func (p *Proc) Kill() {
	if !p.Running() {
		return
	}
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// Tail returns the last n bytes of the process's log (the error's text
// when it cannot be read).
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// LineWriter is an io.Writer (a Proc's stdout) that hands the first
// complete line starting with its prefix to C, once, and discards the rest.
type LineWriter struct {
	// C receives the line (buffered: the writer never blocks).
	C      chan string
	mu     sync.Mutex
	buf    []byte
	prefix string
	sent   bool
}

// NewLineWriter returns a writer waiting for a line starting with prefix.
func NewLineWriter(prefix string) *LineWriter {
	return &LineWriter{C: make(chan string, 1), prefix: prefix}
}

// Write implements io.Writer.
func (w *LineWriter) Write(p []byte) (int, error) {
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
			w.C <- sc.Text()
			w.buf = nil
			break
		}
	}
	return len(p), nil
}
