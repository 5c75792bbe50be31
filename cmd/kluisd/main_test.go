package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The example configuration in docs/kluisd.md is valid, and a broken one
// is refused with exit code 2 and the field named, by the real binary.
func TestCheckFlag(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kluisd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))

	doc, err := os.ReadFile("../../docs/kluisd.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	require.True(t, ok)
	example, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	// The files it names, in the test's directory: --check reads them as
	// the start does.
	pw, key := filepath.Join(dir, "mqtt.pass"), filepath.Join(dir, "qr.pub")
	require.NoError(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
	require.NoError(t, os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(make([]byte, ed25519.PublicKeySize))+"\n"), 0o600))
	require.Contains(t, example, "/etc/kluis/mqtt.pass")
	require.Contains(t, example, "/etc/kluis/qr.pub")
	example = strings.NewReplacer("/etc/kluis/mqtt.pass", pw, "/etc/kluis/qr.pub", key).Replace(example)
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte(example), 0o600))
	out, err = exec.Command(bin, "--config", good, "--check").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "is valid")

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(example, "listen: 127.0.0.1:8088", "listen: 0.0.0.0:8088", 1)), 0o600))
	cmd := exec.Command(bin, "--config", bad, "--check")
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 2, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), "kiosk.listen")

	// A file the configuration names that is missing or not what it
	// should be: exit code 2 and the field named, not "valid" followed
	// by a start that fails.
	for _, tc := range []struct{ file, content, field string }{
		{key, "", "offline.public_key_file"},
		{key, "s3cret, not a key", "offline.public_key_file"},
		{pw, "", "mqtt.password_file"},
	} {
		require.NoError(t, os.Remove(tc.file))
		if tc.content != "" {
			require.NoError(t, os.WriteFile(tc.file, []byte(tc.content), 0o600))
		}
		cmd := exec.Command(bin, "--config", good, "--check")
		out, err = cmd.CombinedOutput()
		require.Error(t, err, string(out))
		require.Equal(t, 2, cmd.ProcessState.ExitCode())
		require.Contains(t, string(out), tc.field)
		require.NotContains(t, string(out), "s3cret")
		require.NoError(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
		require.NoError(t, os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(make([]byte, ed25519.PublicKeySize))+"\n"), 0o600))
	}

	// --version reads no configuration (kluis-bench start times it as
	// the floor of kluisd's start: exec, runtime and package init).
	out, err = exec.Command(bin, "--version", "--config", filepath.Join(dir, "missing.yaml")).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "kluisd dev\n", string(out))
}

// kluisd is the edge binary: it shares the code formats with the backend
// through controller/pickupcode and links none of the backend itself (its
// store, audit trail or PostgreSQL driver).
func TestLinksNoBackendCode(t *testing.T) {
	deps := deps(t)
	require.Contains(t, deps, "kluis/controller/pickupcode", "the shared code formats")
	for _, d := range deps {
		require.False(t, strings.HasPrefix(d, "kluis/backend"), "kluisd links %s", d)
		require.NotContains(t, d, "jackc/pgx", "kluisd links %s", d)
	}
}

// kluisd's metrics are controller/promtext's: the Prometheus client
// library, protobuf and procfs stay out of the binary (about 2 MB of pages
// resident all the time; docs/performance.md, "kluisd's start and memory").
func TestLinksNoPrometheusClient(t *testing.T) {
	deps := deps(t)
	require.Contains(t, deps, "kluis/controller/promtext", "kluisd's metrics")
	for _, d := range deps {
		for _, no := range []string{"github.com/prometheus/", "google.golang.org/protobuf"} {
			require.False(t, strings.HasPrefix(d, no), "kluisd links %s", d)
		}
	}
}

// kluisd looks no method up by name (reflect's Method and MethodByName):
// a binary that can must keep every exported method of every type it could
// reach through an interface, and text/template's executor, which does,
// kept about 2 MB more of kluisd resident (docs/performance.md, "The
// binary's pages"). The kiosk screen executes its templates with
// controller/kiosk/screen/pagetmpl instead.
func TestNoMethodLookupByName(t *testing.T) {
	for _, d := range deps(t) {
		require.NotContains(t, []string{"text/template", "html/template"}, d, "kluisd links %s", d)
	}
	bin := filepath.Join(t.TempDir(), "kluisd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	out, err = exec.Command("go", "tool", "nm", bin).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && (f[2] == "reflect.Value.MethodByName" || f[2] == "reflect.Value.Method") {
			t.Errorf("kluisd links %s", f[2])
		}
	}
}

// deps lists the packages kluisd's binary links (go list -deps).
func deps(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return strings.Fields(string(out))
}
