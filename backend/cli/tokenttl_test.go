package cli

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The API token lifetime and trusted proxy flags are checked before
// anything starts.
func TestServeRefusesBadTokenLifetimes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "-api-token-ttl", "soon"}, `-api-token-ttl "soon"`},
		{[]string{"serve", "-api-token-max-ttl", "-5h"}, `-api-token-max-ttl "-5h"`},
		{[]string{"serve", "-api-token-ttl", "48h", "-api-token-max-ttl", "24h"}, "-api-token-ttl 48h0m0s is above -api-token-max-ttl 24h0m0s"},
		{[]string{"serve", "-trusted-proxies", "10.0.0.1,proxy.local"}, `-trusted-proxies: trusted proxy "proxy.local"`},
	} {
		e, _, errb := testEnv(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"})
		assert.Equal(t, 1, Run(context.Background(), c.args, e), "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
	e, _, errb := testEnv(map[string]string{"KLUIS_API_TOKEN_TTL": "1h", "KLUIS_API_TOKEN_MAX_TTL": "30m",
		"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"})
	assert.Equal(t, 1, Run(context.Background(), []string{"serve"}, e))
	assert.Contains(t, errb.String(), "is above -api-token-max-ttl", "the environment is read too")
}
