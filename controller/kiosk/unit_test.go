package kiosk

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
)

// unitFile reads a systemd unit into key -> values (continuation lines
// joined).
func unitFile(t *testing.T, path string) map[string][]string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := map[string][]string{}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "line %q", line)
		out[k] = append(out[k], strings.Join(strings.Fields(v), " "))
	}
	return out
}

// TestKioskUnit checks deploy/systemd/kluis-kiosk.service against
// kluisd's configuration defaults, and with systemd-analyze verify where
// it is installed (the compositor and the browser need not be).
func TestKioskUnit(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "systemd", "kluis-kiosk.service")
	u := unitFile(t, path)
	cfg, err := config.Parse([]byte("device_id: d\nsite: s\nkind: locker\nmqtt: {url: tcp://127.0.0.1:1883}\n"+
		"hardware: {driver: kluis, serial: {port: /dev/ttyUSB0}}\ncompartments: [{number: 1, board: 0, channel: 0}]\n"), config.ParseOptions{})
	require.NoError(t, err)
	url := "http://" + cfg.Kiosk.Listen + "/"
	require.Contains(t, u["Environment"], "KLUIS_KIOSK_URL="+url, "the URL is kluisd's default kiosk.listen")
	require.Len(t, u["ExecStart"], 1)
	exec0 := u["ExecStart"][0]
	require.Regexp(t, `^/usr/bin/cage .*-- /usr/bin/chromium .*--kiosk .*\$\{KLUIS_KIOSK_URL\}$`, exec0)
	for _, flag := range []string{"--incognito", "--noerrdialogs", "--disable-pinch", "--overscroll-history-navigation=0"} {
		require.Contains(t, exec0, flag)
	}
	require.Contains(t, strings.Join(u["ExecStartPre"], " "), "/dev/tcp/", "waits for the kiosk listener")
	require.Contains(t, strings.Join(u["Wants"], " "), "kluisd.service")
	require.Contains(t, strings.Join(u["After"], " "), "kluisd.service")
	require.Equal(t, []string{"always"}, u["Restart"])
	require.Equal(t, []string{"any"}, u["IPAddressDeny"])
	require.Equal(t, []string{"localhost"}, u["IPAddressAllow"], "the browser reaches loopback only")
	require.Equal(t, []string{"/dev/tty1"}, u["TTYPath"])

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit checked by its fields only")
		return
	}
	dir := t.TempDir()
	for _, f := range []string{"kluis-kiosk.service", "kluisd.service"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	out, _ := exec.Command(analyze, "verify", filepath.Join(dir, "kluis-kiosk.service")).CombinedOutput()
	missing := regexp.MustCompile(`^kluis-kiosk\.service: Command /usr/bin/(cage|chromium) is not executable: No such file or directory$`)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !missing.MatchString(line) {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
