package codes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// The batch reads its codes' rows (codeColumns) from the bytes PostgreSQL
// sent in binary, without pgx's Scan: pgx plans the scan of every column
// again for every result set (its encode plans are memoized, its scan
// plans are not), which was most of the codes read's cost in the
// process once per batch (docs/performance.md, "Sixteenth pass"). A
// result whose columns are not codeColumns' types in binary is scanned by
// scanCode as before.

// codeColumnTypes are codeColumns' types, in order.
var codeColumnTypes = [...]uint32{pgtype.ByteaOID, pgtype.TextOID, pgtype.TextOID, pgtype.Int8OID, pgtype.Int4OID,
	pgtype.Int4OID, pgtype.Int4OID, pgtype.BoolOID, pgtype.ByteaOID, pgtype.TimestamptzOID, pgtype.TimestamptzOID,
	pgtype.TimestamptzOID, pgtype.TimestamptzOID, pgtype.Int4OID, pgtype.TimestamptzOID, pgtype.ByteaOID}

// rawCodes reports whether a result's columns are codeColumns', each in
// binary but the texts.
func rawCodes(fields []pgconn.FieldDescription) bool {
	if len(fields) != len(codeColumnTypes) {
		return false
	}
	for i, f := range fields {
		// A text's value is its bytes in either format (pgx asks for
		// text as text); every other column must come in binary.
		if f.DataTypeOID != codeColumnTypes[i] || f.Format != pgtype.BinaryFormatCode && f.DataTypeOID != pgtype.TextOID {
			return false
		}
	}
	return true
}

// scanCodes reads every row of a codes query (codeColumns) into found,
// by id.
func scanCodes(rows pgx.Rows, found map[string]codeRow) error {
	defer rows.Close()
	raw := rawCodes(rows.FieldDescriptions())
	for rows.Next() {
		var c codeRow
		var err error
		if raw {
			c, err = decodeCode(rows.RawValues())
		} else {
			c, err = scanCode(rows)
		}
		if err != nil {
			return err
		}
		found[string(c.id)] = c
	}
	return rows.Err()
}

var errRawColumn = errors.New("codes: a column's value does not fit its type")

// decodeCode is scanCode over a row's binary values (rawCodes).
func decodeCode(v [][]byte) (codeRow, error) {
	var c codeRow
	if len(v) != len(codeColumnTypes) {
		return c, fmt.Errorf("%w: %d columns", errRawColumn, len(v))
	}
	notNull := func(i int, n int) error {
		switch {
		case v[i] == nil:
			return fmt.Errorf("%w: column %d is NULL", errRawColumn, i)
		case n > 0 && len(v[i]) != n:
			return fmt.Errorf("%w: column %d has %d bytes", errRawColumn, i, len(v[i]))
		}
		return nil
	}
	for i, n := range [...]int{0: -1, 1: -1, 2: -1, 3: 8, 4: 4, 5: 4, 6: 4, 7: 1, 9: 8, 13: 4} {
		if n != 0 {
			if err := notNull(i, n); err != nil {
				return c, err
			}
		}
	}
	c.id = bytesOf(v[0])
	c.documentID, c.deviceID = string(v[1]), string(v[2])
	c.compartmentID = int64(binary.BigEndian.Uint64(v[3]))
	c.compartmentNumber = int(int32(binary.BigEndian.Uint32(v[4])))
	c.board = int(int32(binary.BigEndian.Uint32(v[5])))
	c.channel = int(int32(binary.BigEndian.Uint32(v[6])))
	c.needsDOB = v[7][0] != 0
	c.dobDigest = bytesOf(v[8])
	var err error
	if c.expiresAt, err = timeOf(v[9]); err != nil {
		return c, err
	}
	for i, p := range [...]**time.Time{10: &c.usedAt, 11: &c.revokedAt, 12: &c.lockedAt, 14: &c.graceUntil} {
		if p == nil || v[i] == nil {
			continue
		}
		t, err := timeOf(v[i])
		if err != nil {
			return c, err
		}
		*p = &t
	}
	c.failed = int(int32(binary.BigEndian.Uint32(v[13])))
	c.tokenDigest = bytesOf(v[15])
	return c, nil
}

// bytesOf copies a bytea's value (nil for NULL): pgx reuses the buffer.
func bytesOf(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// timeOf decodes a binary timestamptz (µs since 2000) as pgx does; the
// infinities are refused, as pgx refuses them for a time.Time.
func timeOf(b []byte) (time.Time, error) {
	if len(b) != 8 {
		return time.Time{}, fmt.Errorf("%w: a timestamp of %d bytes", errRawColumn, len(b))
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us == 1<<63-1 || us == -1<<63 {
		return time.Time{}, fmt.Errorf("%w: an infinite timestamp", errRawColumn)
	}
	return time.UnixMicro(pgEpoch + us), nil
}
