package server

import (
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
)

// During a PIN key rotation the derived keys of the previous key are what
// the previous key derived before the rotation; without one there are none.
func TestDerivePrevious(t *testing.T) {
	before, err := codes.GenerateKeys()
	require.NoError(t, err)
	after, err := codes.GenerateKeys()
	require.NoError(t, err)
	require.Nil(t, derivePrevious(after, "notification outbox seal"))
	after.PreviousPIN = before.PIN
	for _, purpose := range []string{"notification outbox seal", "kiosk staff credentials"} {
		require.Equal(t, DeriveKey(before, purpose), derivePrevious(after, purpose), purpose)
		require.NotEqual(t, DeriveKey(after, purpose), derivePrevious(after, purpose), purpose)
	}
}
