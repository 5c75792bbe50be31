package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hashRecordStreamed is HashRecord as it was written first (a hash.Hash
// fed field by field): the chain's definition, which the one-shot hash
// must keep.
func hashRecordStreamed(prevHash []byte, seq int64, at time.Time, actor, action, subject string, details []byte) []byte {
	h := sha256.New()
	h.Write(prevHash)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(at.UnixMicro()))
	h.Write(b[:])
	for _, f := range [][]byte{[]byte(actor), []byte(action), []byte(subject), details} {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(f)))
		h.Write(l[:])
		h.Write(f)
	}
	return h.Sum(nil)
}

// HashRecord and the chainer's appendRecord over the details' text give
// the hash the streamed definition gives, short and long fields (past
// HashRecord's stack buffer) alike.
func TestHashRecordAsStreamed(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 12))
	str := func(max int) string {
		return strings.Repeat("é", r.IntN(max)) + strings.Repeat("x", r.IntN(max))
	}
	for i := range 200 {
		prev := make([]byte, sha256.Size)
		for j := range prev {
			prev[j] = byte(r.Uint32())
		}
		if i == 0 {
			prev = genesis
		}
		seq := r.Int64N(1 << 40)
		at := time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC().Truncate(time.Microsecond)
		actor, action, subject, details := str(20), str(10), str(30), `{"d":"`+str(400)+`"}`
		want := hashRecordStreamed(prev, seq, at, actor, action, subject, []byte(details))
		require.Equal(t, want, HashRecord(prev, seq, at, actor, action, subject, []byte(details)), "record %d", i)
		sum := sha256.Sum256(appendRecord(nil, prev, seq, at, actor, action, subject, details))
		require.Equal(t, want, sum[:], "record %d, the chainer's", i)
	}
}
