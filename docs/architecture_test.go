package docs

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "kluis/"

// section returns the lines of architecture.md under the "## <title>"
// heading, up to the next "## " heading.
func section(t *testing.T, doc []byte, title string) []string {
	t.Helper()
	var out []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = strings.TrimSpace(strings.TrimPrefix(line, "## ")) == title
			continue
		}
		if in {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatalf("architecture.md has no section %q", title)
	}
	return out
}

// firstCells returns the backquoted first cell of every table row.
func firstCells(lines []string) []string {
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	var out []string
	for _, l := range lines {
		if m := row.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

func readDoc(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// The package map has one line per package of `go list ./...`: a package
// added without its line, a line left behind by a removed or renamed
// package, or a package named twice fails here.
func TestPackageMapMatchesGoList(t *testing.T) {
	cmd := exec.Command("go", "list", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		pkgs = append(pkgs, strings.TrimPrefix(p, module))
	}
	if len(pkgs) < 40 {
		t.Fatalf("go list found only %d packages: %v", len(pkgs), pkgs)
	}
	mapped := firstCells(section(t, readDoc(t), "Packages"))
	seen := map[string]int{}
	for _, p := range mapped {
		seen[p]++
	}
	var missing, unknown, twice []string
	for _, p := range pkgs {
		if seen[p] == 0 {
			missing = append(missing, p)
		}
	}
	for p, n := range seen {
		if !slices.Contains(pkgs, p) {
			unknown = append(unknown, p)
		}
		if n > 1 {
			twice = append(twice, p)
		}
	}
	sort.Strings(unknown)
	sort.Strings(twice)
	if len(missing) > 0 {
		t.Errorf("docs/architecture.md, section Packages, has no line for %q: add one (| `path` | job |)", missing)
	}
	if len(unknown) > 0 {
		t.Errorf("docs/architecture.md, section Packages, names %q, which go list ./... does not know: remove or rename the line", unknown)
	}
	if len(twice) > 0 {
		t.Errorf("docs/architecture.md, section Packages, names %q more than once", twice)
	}
}

// Every repository path the page names in backquotes (a package, a
// directory, a file) exists: prose cannot point at a package that is gone.
func TestNamedPathsExist(t *testing.T) {
	doc := readDoc(t)
	path := regexp.MustCompile("`((?:backend|controller|hardware|simulator|cmd|bench|deploy|docs)(?:/[A-Za-z0-9_.*-]+)*/?)`")
	seen := map[string]bool{}
	for _, m := range path.FindAllStringSubmatch(string(doc), -1) {
		p := strings.TrimSuffix(m[1], "/")
		if seen[p] {
			continue
		}
		seen[p] = true
		if strings.Contains(p, "*") {
			if ms, err := filepath.Glob(filepath.Join("..", p)); err != nil || len(ms) == 0 {
				t.Errorf("docs/architecture.md names `%s`, which matches nothing", p)
			}
			continue
		}
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			t.Errorf("docs/architecture.md names `%s`, which does not exist", p)
		}
	}
	if len(seen) < 40 {
		t.Fatalf("only %d paths found: the pattern no longer matches the page", len(seen))
	}
}

// writes finds the tables that non-test Go code under dir changes
// (INSERT INTO, UPDATE ... SET, DELETE FROM), by package directory.
func writes(t *testing.T, root string) map[string]map[string]bool {
	t.Helper()
	stmt := regexp.MustCompile(`\b(?:INSERT INTO|DELETE FROM)\s+([a-z_][a-z0-9_]*)|\bUPDATE\s+([a-z_][a-z0-9_]*)\s+SET\b`)
	out := map[string]map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "var" || name == "node_modules" || strings.HasPrefix(name, ".") && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		for _, m := range stmt.FindAllStringSubmatch(string(b), -1) {
			table := m[1] + m[2]
			if out[table] == nil {
				out[table] = map[string]bool{}
			}
			out[table][filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The section "Where SQL lives" names, for every table, the one package
// whose code writes it; the code agrees (the benchmarks under bench/,
// which measure PostgreSQL directly, and the test-database helpers aside).
func TestTableWritersAsDocumented(t *testing.T) {
	row := regexp.MustCompile("^\\| `([a-z_][a-z0-9_]*)` \\| `([^`]+)` \\|")
	documented := map[string]string{}
	for _, l := range section(t, readDoc(t), "Where SQL lives") {
		if m := row.FindStringSubmatch(l); m != nil {
			documented[m[1]] = m[2]
		}
	}
	if len(documented) < 10 {
		t.Fatalf("only %d tables documented: the table format changed?", len(documented))
	}
	found := writes(t, "..")
	for table, dirs := range found {
		var writers []string
		for d := range dirs {
			if d == "bench" || strings.HasPrefix(d, "bench/") || strings.HasSuffix(d, "test") {
				continue
			}
			writers = append(writers, d)
		}
		sort.Strings(writers)
		if len(writers) == 0 {
			continue
		}
		owner, ok := documented[table]
		switch {
		case !ok:
			t.Errorf("table %s is written by %v but docs/architecture.md (Where SQL lives) does not name its owner", table, writers)
		case len(writers) > 1 || writers[0] != owner:
			t.Errorf("table %s: docs/architecture.md says %s writes it, the code writes it in %v", table, owner, writers)
		}
	}
	for table, owner := range documented {
		if !found[table][owner] {
			t.Errorf("docs/architecture.md says %s writes table %s; no INSERT, UPDATE or DELETE of it there", owner, table)
		}
	}
}
