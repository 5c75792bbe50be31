package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"

	"github.com/stretchr/testify/require"
)

func TestTimelineCountsAndSummary(t *testing.T) {
	var buf bytes.Buffer
	tl := newTimeline(&buf)
	require.True(t, tl.check("An", "collect", "collected", "compartment 1", nil))
	require.False(t, tl.check("Bart", "collect", "collected", "", errors.New("kiosk shows wrong_code:\n  This code is not valid")))
	require.Equal(t, 1, tl.failures())
	tl.summary()
	out := buf.String()
	require.Contains(t, out, "FAIL  Bart")
	require.Contains(t, out, "kiosk shows wrong_code: This code is not valid", "errors are printed on one line")
	require.Contains(t, out, "1 passed, 1 failed")
}

func TestRedactURL(t *testing.T) {
	require.Equal(t, "postgres://u:***@h:5432/db", redactURL("postgres://u:secret@h:5432/db"))
	require.Equal(t, "postgres://postgres@127.0.0.1:5432/x", redactURL("postgres://postgres@127.0.0.1:5432/x"))
}

func TestProcsStopNewestFirstAndLogs(t *testing.T) {
	dir := t.TempDir()
	p, err := newProcs(filepath.Join(dir, "logs"), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	order := filepath.Join(dir, "order")
	// Each process appends its name to order when terminated.
	script := `trap 'echo $0 >> ` + order + `; exit 0' TERM; echo 'level=WARN msg="something odd"'; echo started; while :; do sleep 0.05; done`
	_, err = p.start("first", "sh", []string{"-c", script, "first"}, nil)
	require.NoError(t, err)
	_, err = p.start("second", "sh", []string{"-c", script, "second"}, nil)
	require.NoError(t, err)
	_, err = testenv.Poll(context.Background(), 10*time.Second, "both started", func(context.Context) (bool, string, error) {
		return strings.Contains(p.tail("first", 100), "started") && strings.Contains(p.tail("second", 100), "started"), "", nil
	})
	require.NoError(t, err)
	require.True(t, p.running("first"))
	require.Equal(t, []string{`level=WARN msg="something odd"`}, p.problems("first", 5))
	require.Equal(t, []string{"first", "second"}, p.list())

	p.stopAll(5 * time.Second)
	require.False(t, p.running("first"))
	require.False(t, p.running("second"))
	b, err := os.ReadFile(order)
	require.NoError(t, err)
	require.Equal(t, "second\nfirst\n", string(b))
}

// The build is not part of the scripted part's bound: a fresh clone's
// first build on a busy machine took longer than the four minutes
// (DEMO_ONCE=1 make demo: "go build ./cmd/kluisd: signal: killed" at
// 4m0.2s, load 41). A build slower than the bound (a go that takes 1 s
// against 200 ms) finishes and is reported ok; what comes after it is
// bounded.
func TestBuildIsNotBoundedByTheNight(t *testing.T) {
	dir := t.TempDir()
	goBin := filepath.Join(dir, "go")
	require.NoError(t, os.WriteFile(goBin, []byte("#!/bin/sh\nsleep 1\n"), 0o755))
	var out bytes.Buffer
	p, err := newProcs(filepath.Join(dir, "logs"), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	env := map[string]string{"GO": goBin, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/none?sslmode=disable"}
	d := &demo{log: slog.New(slog.DiscardHandler), getenv: func(k string) string { return env[k] },
		root: filepath.Join(dir, "var", "demo"), run: filepath.Join(dir, "run"), bin: filepath.Join(dir, "bin"),
		nodes: map[string]*node{}, tl: newTimeline(&out), p: p}
	sctx, cancel, ok := d.setup(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.False(t, ok, "no binaries: the backend cannot start")
	require.NotEmpty(t, d.tl.steps)
	build := d.tl.steps[0]
	require.True(t, build.OK, "the build took longer than the bound and was cut: %s", build.Got)
	_, bounded := sctx.Deadline()
	require.True(t, bounded, "the scripted part keeps its bound")
}
