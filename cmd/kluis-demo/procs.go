package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs starts the demo's child processes, keeps their logs under one
// directory and stops them all together.
type procs struct {
	dir    string // logs
	log    *slog.Logger
	mu     sync.Mutex
	cmds   []*exec.Cmd
	names  []string
	exited map[string]chan error
}

func newProcs(dir string, log *slog.Logger) (*procs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	return &procs{dir: dir, log: log, exited: map[string]chan error{}}, nil
}

// start runs bin with args and env (added to the demo's own), its output in
// <dir>/<name>.log.
func (p *procs) start(name, bin string, args []string, env []string) (*exec.Cmd, error) {
	f, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); f.Close() }()
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	p.names = append(p.names, name)
	p.exited[name] = done
	p.mu.Unlock()
	p.log.Debug("started", "proc", name, "pid", cmd.Process.Pid)
	return cmd, nil
}

// running reports whether the named process is still alive.
func (p *procs) running(name string) bool {
	p.mu.Lock()
	ch := p.exited[name]
	p.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case err := <-ch:
		ch <- err
		return false
	default:
		return true
	}
}

// stopAll stops the processes newest first (the kluisds halt their locks
// while the simulator still answers, then the simulator, then the
// backend): SIGTERM to each process group, SIGKILL when it is still running
// after grace.
func (p *procs) stopAll(grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.cmds) - 1; i >= 0; i-- {
		c, name := p.cmds[i], p.names[i]
		ch := p.exited[name]
		select {
		case err := <-ch:
			ch <- err
			continue
		default:
		}
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-ch:
			ch <- err
		case <-time.After(grace):
			p.log.Warn("did not stop in time, killing", "proc", name)
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			err := <-ch
			ch <- err
		}
	}
}

// tail returns the last n bytes of a process's log, for error messages.
func (p *procs) tail(name string, n int64) string {
	f, err := os.Open(filepath.Join(p.dir, name+".log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// problems returns the last n warning and error lines of a process's log.
func (p *procs) problems(name string, n int) []string {
	var out []string
	for _, l := range strings.Split(p.tail(name, 256<<10), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") ||
			strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// list returns the processes in start order.
func (p *procs) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.names...)
}

// waitHTTP polls url until it answers 200 or ctx ends.
func waitHTTP(ctx context.Context, url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("status %s", resp.Status)
			}
			return fmt.Errorf("%s not ready: %w", url, errors.Join(ctx.Err(), err))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
