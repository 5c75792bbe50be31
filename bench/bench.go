package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Env is the environment a subcommand measures in.
type Env struct {
	// AdminURL is a PostgreSQL server where throw-away databases can be
	// created (see TempDatabase).
	AdminURL string
	// MQTTURL is an external broker (Mosquitto), e.g. tcp://127.0.0.1:1883.
	MQTTURL string
	// Log is the logger; subcommands add .With("part", ...).
	Log *slog.Logger
	// Out receives progress lines meant for people (the summary is printed
	// by kluis-bench).
	Out io.Writer
}

// Figure is one measurement against its floor: Ratio = Value/Floor when
// higher is better (rates), Floor/Value when lower is better (latencies).
type Figure struct {
	// Name says what was measured, e.g. "verifications/s, 8 devices".
	Name string `json:"name"`
	// Unit of Value and Floor, e.g. "1/s", "ms".
	Unit string `json:"unit"`
	// Value is Kluis's figure.
	Value float64 `json:"value"`
	// Floor is what the same work costs at the bottom (pgbench, raw fsync...).
	Floor float64 `json:"floor"`
	// LowerIsBetter is set for latencies.
	LowerIsBetter bool `json:"lower_is_better,omitempty"`
	// Goal is the ratio aimed for (0: none).
	Goal float64 `json:"goal,omitempty"`
	// Notes: how the floor was measured, spread over rounds, ...
	Notes string `json:"notes,omitempty"`
}

// Ratio is Value against Floor, 1 meaning as good as the floor (0 when
// either is 0).
func (f Figure) Ratio() float64 {
	if f.Value == 0 || f.Floor == 0 {
		return 0
	}
	if f.LowerIsBetter {
		return f.Floor / f.Value
	}
	return f.Value / f.Floor
}

// Met reports whether the goal, if any, is reached.
func (f Figure) Met() bool { return f.Goal == 0 || f.Ratio() >= f.Goal }

// Report is the result of one run of one subcommand.
type Report struct {
	// Name is the subcommand, e.g. "verify".
	Name string `json:"name"`
	// Command reproduces the run, e.g. "go run ./cmd/kluis-bench verify -rounds 3".
	Command string `json:"command"`
	// Started and Elapsed are filled by kluis-bench when zero.
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Machine is filled by kluis-bench: CPUs, OS/arch, Go version.
	Machine string `json:"machine"`
	// Params are the sizes the run used (devices, rounds, ...).
	Params map[string]any `json:"params,omitempty"`
	// Figures are the measurements.
	Figures []Figure `json:"figures"`
	// Notes are free lines (what was seen, caveats).
	Notes []string `json:"notes,omitempty"`
}

// MachineString describes this machine for a report.
func MachineString() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d CPUs, %s/%s, %s", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// Markdown renders the report as a Markdown section.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s, %s\n\n", r.Name, r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "`%s` (%s, took %s)\n\n", r.Command, r.Machine, r.Elapsed.Round(time.Second))
	if len(r.Params) > 0 {
		keys := make([]string, 0, len(r.Params))
		for k := range r.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%v", k, r.Params[k]))
		}
		fmt.Fprintf(&b, "Parameters: %s\n\n", strings.Join(parts, ", "))
	}
	b.WriteString("| what | Kluis | floor | ratio | goal | notes |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, f := range r.Figures {
		goal := ""
		if f.Goal > 0 {
			mark := "met"
			if !f.Met() {
				mark = "NOT met"
			}
			goal = fmt.Sprintf("%.2f (%s)", f.Goal, mark)
		}
		fmt.Fprintf(&b, "| %s | %s %s | %s %s | %.2f | %s | %s |\n", f.Name,
			num(f.Value), f.Unit, num(f.Floor), f.Unit, f.Ratio(), goal, f.Notes)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n- %s", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// Write stores r in dir as <time>-<name>.json and .md and returns the
// paths. It never overwrites an earlier run.
func Write(dir string, r Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: results directory: %w", err)
	}
	base := filepath.Join(dir, r.Started.UTC().Format("20060102T150405Z")+"-"+r.Name)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bench: encode report: %w", err)
	}
	var paths []string
	for _, f := range []struct {
		ext  string
		body []byte
	}{{".json", append(js, '\n')}, {".md", []byte(r.Markdown())}} {
		p := base + f.ext
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return paths, fmt.Errorf("bench: write report: %w", err)
		}
		_, werr := fh.Write(f.body)
		cerr := fh.Close()
		if werr != nil || cerr != nil {
			return paths, fmt.Errorf("bench: write %s: %v %v", p, werr, cerr)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
