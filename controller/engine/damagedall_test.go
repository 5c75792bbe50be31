package engine

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/offline"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// A damaged journal withdraws every offline code the cache holds, not only
// those of the compartments in the current configuration: a compartment
// taken out of kluisd.yaml (or an address the backend still syncs) kept
// its codes, and put back later one of them, spent in the lost records,
// would open its door offline again.
func TestJournalDamagedWithdrawsCodesOutsideTheConfiguration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		now := time.Now()
		tokFar, cidFar := signToken(t, r.priv, now.Add(time.Hour))
		far := wire.CodeEntry{DocumentID: "doc-far", Addr: wire.Address{Board: 1, Channel: 5}, Expires: now.Add(time.Hour), QRHash: pickupcode.QRHash(cidFar)}
		f, _, _, _ := spendOfflineThenDamageWith(t, r, far)
		r = newRig(t, rigOpts{caps: sensors, dir: r.dir, fake: f, priv: r.priv})
		defer r.stop()
		r.waitFor("alarm", func() bool { return r.hasEvent("alarm:journal_damaged") })
		require.Zero(t, r.cache.Len(), "every code the cache held is withdrawn")
		_, err := r.cache.VerifyQR(tokFar, time.Now())
		require.ErrorIs(t, err, offline.ErrWithdrawn)
	})
}
