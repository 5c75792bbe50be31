package codes

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
	"kluis/deploy/dev/testenv"
)

// Batches in one round trip (BatchOneRT) on rows read ahead, without
// locks: a row that changed between the read and the batch's lock fails
// the batch before anything commits, and the batch is redone in two round
// trips on rows read under the lock.

// TestBatchOneRTRowChangedSinceRead: a code revoked after its attempt's
// read: the one-round-trip transaction commits nothing (no claim, no
// attempt row, no audit record), and the batch redone decides every
// attempt on the rows as they are: the revoked code is denied, the others
// are claimed, each attempt recorded once, the chain intact. A device
// without its row yet fails the batch's lock the same way and goes alone
// after the redo; a code that is not there goes alone at once.
func TestBatchOneRTRowChangedSinceRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	devs, _, tokens := f.devicesWithCodes(4)
	// n1 has no code_devices row yet (its first attempt makes it): its
	// token names d4's code.
	_, err := f.pool.Exec(ctx, `INSERT INTO devices (id, site_id, kind, created_at) VALUES ('n1', 'kortrijk', 'locker', now())`)
	require.NoError(t, err)
	n1 := f.sign("n1", f.item(devs[3], tokens[3]).id)
	items := []*batchItem{f.item(devs[0], tokens[0]), f.item(devs[1], tokens[1]), f.item(devs[2], tokens[2]),
		f.item("n1", n1), f.item(devs[3], f.sign(devs[3], []byte("0123456789abcdef")))}
	require.NoError(t, f.svc.readCodes(ctx, items))
	for _, it := range items[:3] {
		require.True(t, it.read.found, it.a.DeviceID)
		require.NotEmpty(t, it.read.xmin)
		require.Nil(t, it.read.code.usedAt)
	}
	require.True(t, items[3].read.found, "d4's code is there (n1 has no row)")
	require.False(t, items[4].read.found, "no such code")

	// d2's code is revoked after the read (a re-issue, say).
	_, err = f.pool.Exec(ctx, `UPDATE codes SET revoked_at = $2 WHERE id = $1`, items[1].id, f.clock.Now())
	require.NoError(t, err)
	before := f.writes()
	err = f.svc.claimBatchOneRT(ctx, items[:3])
	require.ErrorIs(t, err, errStale)
	require.ErrorContains(t, err, "2 of 3 codes locked as read")
	require.Equal(t, before, f.writes(), "no code claimed, no attempt recorded, no audit record")
	// n1 has no code_devices row for the batch to lock: the same.
	err = f.svc.claimBatchOneRT(ctx, []*batchItem{items[0], items[3]})
	require.ErrorIs(t, err, errStale)
	require.ErrorContains(t, err, "1 of 2 devices locked")
	require.Equal(t, before, f.writes(), "nothing committed")

	// As the leader runs it: tried in one round trip, redone in two.
	for _, it := range items {
		it.out, it.res, it.alone, it.err = outcome{}, Result{}, false, nil
	}
	redone0 := testutil.ToFloat64(f.svc.redone)
	f.svc.batch.run(items)
	require.Equal(t, 1.0, testutil.ToFloat64(f.svc.redone)-redone0)
	for _, it := range items {
		require.NoError(t, it.err, it.a.DeviceID)
	}
	require.NoError(t, items[0].out.err)
	require.ErrorIs(t, items[1].out.err, pickupcode.ErrWrongCode, "revoked while valid")
	require.NoError(t, items[2].out.err)
	require.True(t, items[3].alone, "n1 goes alone (its row is made there)")
	require.True(t, items[4].alone, "no such code: alone")
	after := f.writes()
	require.Equal(t, before.used+2, after.used)
	require.Equal(t, before.attempts+3, after.attempts, "the batch's three attempts recorded once")
	require.Equal(t, before.pending+3, after.pending, "and audited once")
	_, err = f.verify(Attempt{DeviceID: "n1", QRToken: n1})
	require.ErrorIs(t, err, pickupcode.ErrWrongDevice, "n1 alone")
	f.chainIntact()
}

// TestBatchOneRTReadBeforeACommit: a retry on a code whose claim is
// committing is read ahead while the claim's commit is held (it reads
// the code unused); after the commit its batch finds the code's row
// changed and is redone: the retry is denied "already collected" and the
// other attempt of its batch is claimed. The code is claimed once, every
// attempt recorded and audited, the chain intact.
func TestBatchOneRTReadBeforeACommit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.oneRT()
	// Batch A waits for the whole test: its own timeout must not end it
	// on a loaded machine.
	f.svc.batch.timeout = 2 * time.Minute
	devs, _, tokens := f.devicesWithCodes(2)
	_, attempts0, denied0 := f.counts("code.denied")
	redone0 := testutil.ToFloat64(f.svc.redone)
	release := f.holdWrites()
	type answer struct {
		i   int
		err error
	}
	answers := make(chan answer, 3)
	verify := func(i int, dev, token string) {
		go func() {
			_, err := f.verify(Attempt{DeviceID: dev, QRToken: token})
			answers <- answer{i, err}
		}()
	}
	verify(0, devs[0], tokens[0])
	testenv.EventuallyWithin(t, 10*time.Second, "batch A commits", func() bool { return f.queued() == 0 && f.commitBlocked() })
	verify(1, devs[0], tokens[0]) // d1's retry
	verify(2, devs[1], tokens[1])
	testenv.EventuallyWithin(t, 10*time.Second, "both read and queued behind A", func() bool { return f.queued() == 2 })
	f.svc.batch.mu.Lock()
	for _, it := range f.svc.batch.queue {
		require.NotNil(t, it.read, "read ahead")
		require.Nil(t, it.read.code.usedAt, "read before A's commit")
	}
	f.svc.batch.mu.Unlock()
	select {
	case a := <-answers:
		t.Fatalf("attempt %d answered while A's commit is held: %v", a.i, a.err)
	default:
	}
	release()
	errs := map[int]error{}
	for range 3 {
		select {
		case a := <-answers:
			errs[a.i] = a.err
		case <-time.After(time.Minute): // a bound reached only when the test fails
			t.Fatal("not every attempt answered")
		}
	}
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], pickupcode.ErrAlreadyCollected, "the retry")
	require.NoError(t, errs[2])
	require.Equal(t, 1.0, testutil.ToFloat64(f.svc.redone)-redone0, "the retry's batch redone")
	used, attempts, denied := f.counts("code.denied")
	require.Equal(t, 2, used)
	require.Equal(t, 3, attempts-attempts0, "every attempt recorded once")
	require.Equal(t, 1, denied-denied0, "the retry's denial audited")
	f.noLeaderLeft()
	f.chainIntact()
}
