package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A user or token id that is not a number of 1 or more is a usage error
// (exit code 2) naming the subcommand, the argument and the list to look
// in; nothing is sent (no server is listening at KLUIS_URL).
func TestBadIDIsAUsageError(t *testing.T) {
	env := map[string]string{"KLUIS_URL": "http://127.0.0.1:1", "KLUIS_TOKEN": "kls_unused"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"users", "update", "abc", "-badge", "b1"}, `users update: user id "abc": want a number (see kluisctl users list)`},
		{[]string{"users", "unlock", "0"}, `users unlock: user id "0": want a number (see kluisctl users list)`},
		{[]string{"tokens", "revoke", "7x"}, `tokens revoke: token id "7x": want a number (see kluisctl tokens list)`},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
		require.Equal(t, 2, code, "%v: %s", tc.args, errb.String())
		require.Contains(t, errb.String(), tc.want, tc.args)
		require.Empty(t, out.String())
	}
}
