package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// step is one scripted moment of the night and whether it went as expected.
type step struct {
	At       time.Duration
	Who      string
	What     string
	Expected string
	Got      string
	OK       bool
}

// timeline records the night's steps and prints them as they happen.
type timeline struct {
	mu    sync.Mutex
	start time.Time
	out   io.Writer
	steps []step
}

func newTimeline(out io.Writer) *timeline { return &timeline{start: time.Now(), out: out} }

// check records a step: ok when err is nil.
func (t *timeline) check(who, what, expected string, got string, err error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := step{At: time.Since(t.start).Round(100 * time.Millisecond), Who: who, What: what, Expected: expected, Got: got, OK: err == nil}
	if err != nil {
		s.Got = err.Error()
	}
	t.steps = append(t.steps, s)
	mark := "ok  "
	if !s.OK {
		mark = "FAIL"
	}
	fmt.Fprintf(t.out, "%8s  %s  %-18s %s: %s\n", s.At, mark, s.Who, s.What, oneLine(s.Got))
	return s.OK
}

// failures counts the steps that did not go as expected.
func (t *timeline) failures() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.steps {
		if !s.OK {
			n++
		}
	}
	return n
}

// summary prints the table of every step.
func (t *timeline) summary() {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(t.out)
	fmt.Fprintln(t.out, "Summary of the night")
	w := tabwriter.NewWriter(t.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "#\tresult\twho\tstep\texpected\tgot")
	for i, s := range t.steps {
		r := "ok"
		if !s.OK {
			r = "FAIL"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, r, s.Who, s.What, s.Expected, clip(oneLine(s.Got), 60))
	}
	w.Flush()
	n := 0
	for _, s := range t.steps {
		if s.OK {
			n++
		}
	}
	fmt.Fprintf(t.out, "\n%d passed, %d failed\n", n, len(t.steps)-n)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
