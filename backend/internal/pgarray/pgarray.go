// Package pgarray passes Go slices as PostgreSQL array parameters without
// an allocation per element.
//
// pgx encodes a []string, [][]byte, []int64 or []time.Time parameter element by
// element through an interface value: each string, time or int64 over 255 is
// copied to the heap to be boxed (pgtype.FlatArray's Index), each []byte goes
// through reflection (two allocations). The batch of code verifications
// sends seven such arrays per attempt (backend/codes, backend/audit's
// AppendArgs): about 20 of the process's 250 allocations per
// verification (docs/performance.md, "Twelfth pass"). The types here
// hand pgx each element as a one-pointer struct, which an interface holds
// without an allocation, through the valuer interfaces pgx's own codecs
// take (pgtype.TextValuer, BytesValuer, TimestamptzValuer): the bytes on
// the wire are the same. A nil slice is NULL, an empty one an empty
// array, a nil []byte element NULL, as with the plain slices.
package pgarray

import (
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// dimensions is a flat array's: nil (NULL) for a nil slice.
func dimensions(isNil bool, n int) []pgtype.ArrayDimension {
	if isNil {
		return nil
	}
	return []pgtype.ArrayDimension{{Length: int32(n), LowerBound: 1}}
}

// Strings is a text[] (or varchar[]) parameter.
type Strings []string

// Dimensions implements pgtype.ArrayGetter.
func (a Strings) Dimensions() []pgtype.ArrayDimension { return dimensions(a == nil, len(a)) }

// Index implements pgtype.ArrayGetter.
func (a Strings) Index(i int) any { return textElem{&a[i]} }

// IndexType implements pgtype.ArrayGetter.
func (a Strings) IndexType() any { return textElem{} }

type textElem struct{ p *string }

// TextValue implements pgtype.TextValuer.
func (e textElem) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: *e.p, Valid: true}, nil
}

// Bytes is a bytea[] parameter; a nil element is NULL.
type Bytes [][]byte

// Dimensions implements pgtype.ArrayGetter.
func (a Bytes) Dimensions() []pgtype.ArrayDimension { return dimensions(a == nil, len(a)) }

// Index implements pgtype.ArrayGetter.
func (a Bytes) Index(i int) any { return bytesElem{&a[i]} }

// IndexType implements pgtype.ArrayGetter.
func (a Bytes) IndexType() any { return bytesElem{} }

type bytesElem struct{ p *[]byte }

// BytesValue implements pgtype.BytesValuer (nil: NULL).
func (e bytesElem) BytesValue() ([]byte, error) { return *e.p, nil }

// Int64s is a bigint[] parameter.
type Int64s []int64

// Dimensions implements pgtype.ArrayGetter.
func (a Int64s) Dimensions() []pgtype.ArrayDimension { return dimensions(a == nil, len(a)) }

// Index implements pgtype.ArrayGetter.
func (a Int64s) Index(i int) any { return int64Elem{&a[i]} }

// IndexType implements pgtype.ArrayGetter.
func (a Int64s) IndexType() any { return int64Elem{} }

type int64Elem struct{ p *int64 }

// Int64Value implements pgtype.Int64Valuer.
func (e int64Elem) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: *e.p, Valid: true}, nil
}

// Times is a timestamptz[] parameter.
type Times []time.Time

// Dimensions implements pgtype.ArrayGetter.
func (a Times) Dimensions() []pgtype.ArrayDimension { return dimensions(a == nil, len(a)) }

// Index implements pgtype.ArrayGetter.
func (a Times) Index(i int) any { return timeElem{&a[i]} }

// IndexType implements pgtype.ArrayGetter.
func (a Times) IndexType() any { return timeElem{} }

type timeElem struct{ p *time.Time }

// TimestamptzValue implements pgtype.TimestamptzValuer, as pgx's own
// wrapper of a time.Time does.
func (e timeElem) TimestamptzValue() (pgtype.Timestamptz, error) {
	return pgtype.Timestamptz{Time: *e.p, Valid: true}, nil
}
