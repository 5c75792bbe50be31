package pgarray

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/pgtest"
)

var (
	at      = time.Date(2026, 12, 7, 16, 30, 0, 123456789, time.FixedZone("x", 3600))
	strs    = []string{"bench-001", "", "é, \"{q}\"", "wrong_code"}
	byteses = [][]byte{{1, 2, 3}, nil, {}, []byte("code")}
	times   = []time.Time{at, {}, at.Add(-time.Hour).UTC()}
)

// Each type encodes to the bytes pgx gives the plain slice, in both
// formats, nil, empty and NULL elements included.
func TestSameBytesAsThePlainSlice(t *testing.T) {
	m := pgtype.NewMap()
	for _, c := range []struct {
		name        string
		oid         uint32
		plain, mine any
	}{
		{"strings", pgtype.TextArrayOID, strs, Strings(strs)},
		{"strings empty", pgtype.TextArrayOID, []string{}, Strings{}},
		{"strings nil", pgtype.TextArrayOID, []string(nil), Strings(nil)},
		{"varchar", pgtype.VarcharArrayOID, strs, Strings(strs)},
		{"bytes", pgtype.ByteaArrayOID, byteses, Bytes(byteses)},
		{"bytes empty", pgtype.ByteaArrayOID, [][]byte{}, Bytes{}},
		{"bytes nil", pgtype.ByteaArrayOID, [][]byte(nil), Bytes(nil)},
		{"times", pgtype.TimestamptzArrayOID, times, Times(times)},
		{"int64s", pgtype.Int8ArrayOID, []int64{1, 0, -1, 1 << 40}, Int64s{1, 0, -1, 1 << 40}},
		{"int64s nil", pgtype.Int8ArrayOID, []int64(nil), Int64s(nil)},
		{"times nil", pgtype.TimestamptzArrayOID, []time.Time(nil), Times(nil)},
	} {
		for _, format := range []int16{pgtype.BinaryFormatCode, pgtype.TextFormatCode} {
			want, err := m.Encode(c.oid, format, c.plain, nil)
			require.NoError(t, err, c.name)
			got, err := m.Encode(c.oid, format, c.mine, nil)
			require.NoError(t, err, c.name)
			assert.Equal(t, want, got, "%s, format %d", c.name, format)
			if strings.HasSuffix(c.name, " nil") {
				assert.Nil(t, got, "%s is NULL", c.name)
			}
		}
	}
}

// Encoding allocates nothing per element: the allocations of a long array
// are those of a short one.
func TestNoAllocationPerElement(t *testing.T) {
	m := pgtype.NewMap()
	buf := make([]byte, 0, 1<<16)
	allocs := func(oid uint32, v any) float64 {
		return testing.AllocsPerRun(50, func() {
			if _, err := m.Encode(oid, pgtype.BinaryFormatCode, v, buf[:0]); err != nil {
				t.Fatal(err)
			}
		})
	}
	long := func(n int) ([]string, [][]byte, []time.Time, []int64) {
		s, b, tm, i64 := make([]string, n), make([][]byte, n), make([]time.Time, n), make([]int64, n)
		for i := range n {
			s[i], b[i], tm[i], i64[i] = "device", []byte("code id"), at, 1000+int64(i)
		}
		return s, b, tm, i64
	}
	s1, b1, t1, i1 := long(1)
	s64, b64, t64, i64 := long(64)
	assert.Equal(t, allocs(pgtype.Int8ArrayOID, Int64s(i1)), allocs(pgtype.Int8ArrayOID, Int64s(i64)), "int64s")
	assert.Equal(t, allocs(pgtype.TextArrayOID, Strings(s1)), allocs(pgtype.TextArrayOID, Strings(s64)), "strings")
	assert.Equal(t, allocs(pgtype.ByteaArrayOID, Bytes(b1)), allocs(pgtype.ByteaArrayOID, Bytes(b64)), "bytes")
	assert.Equal(t, allocs(pgtype.TimestamptzArrayOID, Times(t1)), allocs(pgtype.TimestamptzArrayOID, Times(t64)), "times")
	// The plain slices allocate per element (why this package exists).
	assert.Greater(t, allocs(pgtype.TextArrayOID, s64), allocs(pgtype.TextArrayOID, s1)+32)
}

// Through a real PostgreSQL, as parameters of a prepared statement (the
// batch's statements are): the same values come back.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var (
		gotS    []string
		gotB    [][]byte
		gotT    []time.Time
		nulls   [3]bool
		lengths [3]int
	)
	require.NoError(t, conn.QueryRow(ctx, `SELECT $1::text[], $2::bytea[], $3::timestamptz[],
			$4::text[] IS NULL, $5::bytea[] IS NULL, $6::timestamptz[] IS NULL,
			cardinality($7::text[]), cardinality($8::bytea[]), cardinality($9::timestamptz[])`,
		Strings(strs), Bytes(byteses), Times(times), Strings(nil), Bytes(nil), Times(nil),
		Strings{}, Bytes{}, Times{}).
		Scan(&gotS, &gotB, &gotT, &nulls[0], &nulls[1], &nulls[2], &lengths[0], &lengths[1], &lengths[2]))
	assert.Equal(t, strs, gotS)
	assert.Equal(t, [][]byte{{1, 2, 3}, nil, {}, []byte("code")}, gotB, "a nil element is NULL, an empty one empty")
	require.Len(t, gotT, len(times))
	for i := range times {
		assert.True(t, times[i].Truncate(time.Microsecond).Equal(gotT[i]), "time %d: %v against %v", i, times[i], gotT[i])
	}
	assert.Equal(t, [3]bool{true, true, true}, nulls)
	assert.Equal(t, [3]int{0, 0, 0}, lengths)
}
