package cli

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The per-device budget flags are checked before anything starts.
func TestServeRefusesBadBudgets(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "-device-verify-budget", "2"}, `invalid value "2" for flag -device-verify-budget: budget "2": want RATE/BURST`},
		{[]string{"serve", "-device-event-budget", "0/600"}, `budget "0/600": the rate (a second) must be above 0`},
		{[]string{"serve", "-device-alarm-budget", "1/0"}, `budget "1/0": the burst must be at least 1`},
	} {
		e, _, errb := testEnv(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"})
		assert.NotZero(t, Run(context.Background(), c.args, e), "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
	e, _, errb := testEnv(nil)
	assert.Zero(t, Run(context.Background(), []string{"serve", "-h"}, e))
	assert.Contains(t, errb.String(), "-device-verify-budget value", "documented")
	assert.Contains(t, errb.String(), "(default 2/60)")
	assert.Contains(t, errb.String(), "(default 10/600)")
	assert.Contains(t, errb.String(), "(default 1/60)")
	assert.Contains(t, errb.String(), "-device-result-budget value")
}
