package api_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
)

// A compartment's number, board or channel beyond what a column of
// PostgreSQL's integer holds (2147483648) was a 500 "internal error"
// (found black-box), and one beyond what the rest of Kluis can address
// was stored: a number over 512, which no compartment route takes (1 to
// 512), or a board or channel no device can report or be told to pulse
// (hardware.Address: boards 0-31, channels 0-47; the wire refuses
// others). Each is now 400 invalid_input naming the field, nothing
// stored; the largest that fit are taken.
func TestCompartmentBoundsAreInputErrors(t *testing.T) {
	e := newEnv(t)
	admin := e.tokens[auth.RoleAdmin]
	r := e.do("POST", "/api/v1/sites", admin, map[string]string{"id": "s1", "name": "Stadhuis"})
	require.Equal(t, 201, r.status, string(r.body))
	for _, c := range []struct {
		comp  map[string]any
		field string
	}{
		{map[string]any{"channel": 0, "size": "M", "board": 2147483648}, "compartments[0].board"},
		{map[string]any{"channel": 0, "size": "M", "number": 2147483648}, "compartments[0].number"},
		{map[string]any{"channel": 2147483648, "size": "M"}, "compartments[0].channel"},
		{map[string]any{"channel": 0, "size": "M", "board": 32}, "compartments[0].board"},
		{map[string]any{"channel": 48, "size": "M"}, "compartments[0].channel"},
		{map[string]any{"channel": 0, "size": "M", "number": 513}, "compartments[0].number"},
	} {
		r := e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "d1", "site_id": "s1", "kind": "locker",
			"compartments": []map[string]any{c.comp}})
		require.Equal(t, 400, r.status, "%v: %s", c.comp, r.body)
		assert.Equal(t, "invalid_input", r.errCode())
		assert.Contains(t, string(r.body), `"field":"`+c.field+`"`, "%v", c.comp)
		assert.Equal(t, 404, e.do("GET", "/api/v1/devices/d1", admin, nil).status, "nothing stored")
	}
	r = e.do("POST", "/api/v1/devices", admin, map[string]any{"id": "d1", "site_id": "s1", "kind": "locker",
		"compartments": []map[string]any{{"channel": 47, "board": 31, "size": "M", "number": 512}}})
	require.Equal(t, 201, r.status, string(r.body))
	assert.Empty(t, e.errors.String(), "no error logged")
}
