package docs

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"kluis/backend/cli"
)

// backendFlag is one flag of `kluis-backend serve -h`.
type backendFlag struct {
	def   string // the default PrintDefaults shows, "" when none
	usage string
}

// serveFlags returns the flags of `kluis-backend serve` as its -h prints
// them, with an empty environment.
func serveFlags(t *testing.T) map[string]backendFlag {
	t.Helper()
	var out bytes.Buffer
	code := cli.Run(context.Background(), []string{"serve", "-h"}, cli.Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out,
		Getenv: func(string) string { return "" },
	})
	if code != 0 {
		t.Fatalf("kluis-backend serve -h: exit %d\n%s", code, out.String())
	}
	name := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	def := regexp.MustCompile(`\(default "?(.*?)"?\)$`)
	flags := map[string]backendFlag{}
	var cur string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if m := name.FindStringSubmatch(line); m != nil {
			cur = m[1]
			flags[cur] = backendFlag{}
			continue
		}
		if cur == "" || !strings.HasPrefix(line, "    \t") {
			continue
		}
		f := flags[cur]
		f.usage = strings.TrimSpace(line)
		if m := def.FindStringSubmatch(f.usage); m != nil {
			f.def = m[1]
		}
		flags[cur] = f
	}
	if len(flags) < 30 {
		t.Fatalf("kluis-backend serve -h listed only %d flags:\n%s", len(flags), out.String())
	}
	return flags
}

// The table of docs/api.md, "Running kluis-backend", which the README
// calls the place of every setting: one row per flag of `kluis-backend
// serve` and no other, each row's environment variable the one the flag
// reads, and each default written as a value the flag's default.
func TestBackendFlagTableMatchesTheCommand(t *testing.T) {
	doc, err := os.ReadFile("api.md")
	if err != nil {
		t.Fatal(err)
	}
	flags := serveFlags(t)
	row := regexp.MustCompile("^\\| `-([a-z0-9-]+)` \\|([^|]*)\\|([^|]*)\\|")
	tick := regexp.MustCompile("`([^`]+)`")
	seen := map[string]bool{}
	for _, line := range section(t, doc, "Running kluis-backend") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name, env, def := m[1], strings.TrimSpace(m[2]), strings.TrimSpace(m[3])
		if seen[name] {
			t.Errorf("api.md: -%s has two rows", name)
		}
		seen[name] = true
		f, ok := flags[name]
		if !ok {
			t.Errorf("api.md names -%s, which kluis-backend serve does not take", name)
			continue
		}
		if e := tick.FindStringSubmatch(env); e != nil && !strings.Contains(f.usage, "env "+e[1]) {
			t.Errorf("api.md: -%s reads %s, but its -h says %q", name, e[1], f.usage)
		}
		switch {
		case strings.HasPrefix(def, "empty"):
			if f.def != "" {
				t.Errorf("api.md: -%s defaults to empty, the command to %q", name, f.def)
			}
		case strings.HasPrefix(def, "`") && !strings.Contains(def, "<"):
			want := tick.FindStringSubmatch(def)[1]
			if !sameDefault(want, f.def) {
				t.Errorf("api.md: -%s defaults to %q, the command to %q", name, want, f.def)
			}
		}
	}
	for name := range flags {
		if !seen[name] {
			t.Errorf("kluis-backend serve -%s has no row in api.md, \"Running kluis-backend\"", name)
		}
	}
}

// sameDefault compares a documented default with the flag's: durations by
// value (1m is 1m0s), anything else as written.
func sameDefault(doc, flag string) bool {
	if doc == flag {
		return true
	}
	a, errA := time.ParseDuration(doc)
	b, errB := time.ParseDuration(flag)
	return errA == nil && errB == nil && a == b
}
