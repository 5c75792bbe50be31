package api_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/store"
)

// The pickup slip is an HTML page with the PIN and the QR code, opened in
// a browser to print: besides no-store and nosniff it gets the track
// page's policy (its own inline style and data: image only, no script, no
// framing, no referrer), so that a name that slipped through could run
// nothing and no other site can frame it.
func TestSlipPageHeaders(t *testing.T) {
	e := newEnv(t, func(o *api.Options) {
		o.Slip = func(ctx context.Context, d store.Document) ([]byte, error) {
			return []byte("<html><style>p{}</style><p>slip</p></html>"), nil
		}
	})
	e.setupSite(1)
	doc := e.register("591-3333333-34")
	r := e.do("GET", "/api/v1/documents/"+doc.ID+"/slip", e.tokens[auth.RoleStaff], nil)
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	assert.Equal(t, "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
		r.header.Get("Content-Security-Policy"))
	assert.Equal(t, "DENY", r.header.Get("X-Frame-Options"))
	assert.Equal(t, "no-referrer", r.header.Get("Referrer-Policy"))
}
