package notify

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMailURL(t *testing.T) {
	m, err := ParseMailURL("smtp://kluis:s3cret@mail.kortrijk.be:587")
	require.NoError(t, err)
	s := m.(*SMTP)
	require.Equal(t, "mail.kortrijk.be:587", s.Addr)
	require.Equal(t, "kluis", s.Username)
	require.Equal(t, "s3cret", s.Password)
	require.False(t, s.AllowPlain)
	m, err = ParseMailURL("smtp://127.0.0.1:25?plain=1")
	require.NoError(t, err)
	require.True(t, m.(*SMTP).AllowPlain)
	m, err = ParseMailURL("drop:/tmp/outbox")
	require.NoError(t, err)
	require.Equal(t, "/tmp/outbox", m.(*Drop).Dir)
	for _, bad := range []string{"", "drop:", "http://x:1", "smtp://hostonly", "smtp://u:s3cret@:25x"} {
		_, err := ParseMailURL(bad)
		require.ErrorIs(t, err, ErrInvalid, bad)
		require.NotContains(t, err.Error(), "s3cret")
	}
}
