package codes

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// The batch's codes read decodes each row from PostgreSQL's binary
// values (decodeCode) into what scanCode makes of it through pgx: every
// column, NULL or not, on codes in every state a batch meets.
func TestDecodeCodeAsScanned(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.issue("driving_licence", "l1", 1)
	f.issue("eid", "l1", 2) // needs the date of birth: dob_digest set
	f.issue("driving_licence", "l1", 3)
	f.issue("driving_licence", "l2", 1)
	now := f.clock.Now()
	_, err := f.pool.Exec(ctx, `UPDATE codes SET used_at = $1, grace_until = $1::timestamptz + interval '5 minutes'
		WHERE compartment_number = 1 AND device_id = 'l1'`, now)
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE codes SET revoked_at = $1, locked_at = $1, failed_attempts = 3, token_digest = NULL
		WHERE compartment_number = 3`, now.Add(-time.Hour))
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE codes SET expires_at = '1969-07-20 20:17:40.123456+00' WHERE device_id = 'l2'`)
	require.NoError(t, err)

	// raw: the batch's read (binary, decodeCode); else the same query in
	// the simple protocol, whose texts send scanCodes to its fallback,
	// scanCode through pgx.
	read := func(raw bool) map[string]codeRow {
		found := map[string]codeRow{}
		require.NoError(t, pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
			var args []any
			if !raw {
				args = append(args, pgx.QueryExecModeSimpleProtocol)
			}
			rows, err := tx.Query(ctx, `SELECT `+codeColumns+` FROM codes ORDER BY id`, args...)
			if err != nil {
				return err
			}
			require.Equal(t, raw, rawCodes(rows.FieldDescriptions()), "binary columns decoded, texts scanned")
			return scanCodes(rows, found)
		}))
		return found
	}
	scanned, decoded := read(false), read(true)
	require.Len(t, scanned, 4)
	require.Equal(t, scanned, decoded)
	var dob, noToken, used, old int
	for _, c := range decoded {
		if c.dobDigest != nil {
			dob++
		}
		if c.tokenDigest == nil && c.lockedAt != nil && c.revokedAt != nil {
			noToken++
		}
		if c.usedAt != nil && c.graceUntil != nil {
			used++
		}
		if c.expiresAt.Year() == 1969 && c.expiresAt.Nanosecond() == 123456000 {
			old++
		}
	}
	require.Equal(t, []int{1, 1, 1, 1}, []int{dob, noToken, used, old}, "every kind of row read")

	// A value that is not the column's type is refused, not misread.
	_, err = decodeCode(make([][]byte, len(codeColumnTypes)))
	require.ErrorIs(t, err, errRawColumn)
	_, err = timeOf([]byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	require.ErrorIs(t, err, errRawColumn, "infinity")
}
