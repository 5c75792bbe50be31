package cli

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// -allowed-hosts (and KLUIS_ALLOWED_HOSTS) is checked before anything
// starts: a name that could never match a Host stops the start with the
// flag named.
func TestServeRefusesAnAllowedHostThatIsNotAName(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
	}{
		{[]string{"serve", "-allowed-hosts", "scrape.kluis.lan,https://kluis.example"}, ""},
		{[]string{"serve"}, "kluis.example:8080"},
	} {
		env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"}
		if c.env != "" {
			env["KLUIS_ALLOWED_HOSTS"] = c.env
		}
		e, _, errb := testEnv(env)
		assert.Equal(t, 1, Run(context.Background(), c.args, e), "%v", c.args)
		assert.Contains(t, errb.String(), "-allowed-hosts: allowed host", "%v", c.args)
		assert.Contains(t, errb.String(), "a host name only", "%v", c.args)
	}
}
