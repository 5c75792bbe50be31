package procrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A real child process (sh): its ready line reaches the LineWriter, its
// output the log; Stop ends it, Start runs it again appending to the same
// log; Kill ends it for good.
func TestProcStartStopRestartKill(t *testing.T) {
	sh, err := filepath.Abs("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lw := NewLineWriter(`{"control"`)
	p := New(dir, "child", sh, []string{"-c", `echo starting; echo "$GREETING"; echo '{"control":"x"}'; exec sleep 60`}, []string{"GREETING=hello"}, lw)
	if p.Running() || p.Pid() != 0 {
		t.Fatal("running before Start")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	select {
	case line := <-lw.C:
		if line != `{"control":"x"}` {
			t.Fatalf("ready line %q", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no ready line:\n%s", p.Tail(1000))
	}
	if !p.Running() || p.Pid() <= 0 {
		t.Fatal("not running after Start")
	}
	p.Stop(10 * time.Second)
	if p.Running() {
		t.Fatal("running after Stop")
	}
	log := p.Tail(1 << 20)
	for _, want := range []string{"=== start ", "starting\n", "hello\n", `{"control":"x"}`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if !p.Running() {
		t.Fatal("not running after the second Start")
	}
	p.Kill()
	if p.Running() {
		t.Fatal("running after Kill")
	}
	if n := strings.Count(p.Tail(1<<20), "=== start "); n != 2 {
		t.Fatalf("%d runs in the log, want 2", n)
	}
	if got := p.Tail(6); len(got) != 6 {
		t.Fatalf("Tail(6) = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "child.log")); err != nil {
		t.Fatal(err)
	}
	if err := New(dir, "missing", filepath.Join(dir, "no-such-binary"), nil, nil, nil).Start(); err == nil {
		t.Fatal("started a binary that does not exist")
	}
}

// The line is handed over only once it is complete, once, whatever the
// write boundaries; other lines are ignored.
func TestLineWriter(t *testing.T) {
	w := NewLineWriter(`{"control"`)
	write := func(chunk string) {
		t.Helper()
		if n, err := w.Write([]byte(chunk)); err != nil || n != len(chunk) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	write("noise\n{\"con")
	write("trol\":\"a\"}")
	if len(w.C) != 0 {
		t.Fatal("line handed over before it was complete")
	}
	write("\n{\"control\":\"b\"}\n")
	if got := <-w.C; got != `{"control":"a"}` {
		t.Fatalf("got %q", got)
	}
	write("{\"control\":\"c\"}\n")
	if len(w.C) != 0 {
		t.Fatal("a second line handed over")
	}
}
