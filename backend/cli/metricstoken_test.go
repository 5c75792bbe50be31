package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -metrics-token-file is read and checked before anything starts: a
// missing file or a weak token stops the start with the flag named.
func TestServeRefusesBadMetricsToken(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("abc\n"), 0o600))
	spaced := filepath.Join(dir, "spaced")
	require.NoError(t, os.WriteFile(spaced, []byte("a token with spaces in it\n"), 0o600))
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"serve", "-metrics-token-file", filepath.Join(dir, "missing")}, "", "-metrics-token-file: open"},
		{[]string{"serve", "-metrics-token-file", short}, "", "one word of at least 16 characters"},
		{[]string{"serve"}, spaced, "one word of at least 16 characters"},
	} {
		env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"}
		if c.env != "" {
			env["KLUIS_METRICS_TOKEN_FILE"] = c.env
		}
		e, _, errb := testEnv(env)
		assert.Equal(t, 1, Run(context.Background(), c.args, e), "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
	tok, err := readMetricsToken("")
	require.NoError(t, err)
	assert.Empty(t, tok)
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("0123456789abcdef-metrics\n"), 0o600))
	tok, err = readMetricsToken(good)
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef-metrics", tok)
}
