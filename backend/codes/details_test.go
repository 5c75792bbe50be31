package codes

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An attempt's audit details encode byte for byte as the map they
// replaced (and asMap still gives): the same record in audit_pending,
// escaping included, code_id left out when there is no code.
func TestAttemptDetailsAsTheMap(t *testing.T) {
	for _, d := range []attemptDetails{
		{Device: "bench-001", Method: "qr", Reason: "ok", CodeID: "q83vASNFZ4mrze8BI0VniQ"},
		{Device: "dev-a", Method: "pin", Reason: "wrong_code"},
		{Device: "<dev>&\u2028é\xff", Method: "qr", Reason: "already_collected", CodeID: "a+b/c=="},
	} {
		got, err := json.Marshal(d)
		require.NoError(t, err)
		want, err := json.Marshal(d.asMap())
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got))
	}
}
