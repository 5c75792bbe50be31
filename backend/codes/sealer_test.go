package codes

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
	"kluis/deploy/dev/testenv"
)

// sealRecorder is a Sealer that records each call and whether any of its
// attempts' Verify had returned by then.
type sealRecorder struct {
	mu       sync.Mutex
	returned map[any]bool // by seal: its Verify returned
	calls    [][]Decided
	late     []bool
}

func (r *sealRecorder) SealBatch(d []Decided) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, append([]Decided(nil), d...))
	late := false
	for _, x := range d {
		late = late || r.returned[x.Attempt.Seal]
	}
	r.late = append(r.late, late)
}

func (r *sealRecorder) verified(seal any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.returned[seal] = true
}

// The sealer gets a batch's decided attempts that carry a Seal, with what
// Verify returns for each, before any of them returns: one call per batch,
// refusals decided in the batch included, attempts without a Seal left
// out.
func TestSealerSeesABatchBeforeItsAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rec := &sealRecorder{returned: map[any]bool{}}
	f.svc.sealer = rec
	devs, _, tokens := f.devicesWithCodes(4)
	// d4's code is spent: its second use is refused in the batch.
	_, err := f.verify(Attempt{DeviceID: devs[3], QRToken: tokens[3], Seal: "spend"})
	require.NoError(t, err)
	require.Len(t, rec.calls, 1)
	rec.calls, rec.late = nil, nil

	release := f.holdWrites()
	type answer struct {
		res Result
		err error
	}
	answers := make([]answer, len(devs))
	var wg sync.WaitGroup
	verify := func(i int, seal any) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.verify(Attempt{DeviceID: devs[i], QRToken: tokens[i], Seal: seal})
			answers[i] = answer{res, err}
			rec.verified(seal)
		}()
	}
	verify(0, "s0")
	testenv.EventuallyWithin(t, 10*time.Second, "the first batch waits in its writes", f.commitBlocked)
	verify(1, "s1")
	verify(2, nil) // no Seal: not handed to the sealer
	verify(3, "s3")
	testenv.EventuallyWithin(t, 10*time.Second, "the others wait for the next batch", func() bool { return f.queued() == 3 })
	release()
	wg.Wait()

	require.Len(t, rec.calls, 2, "one call per batch")
	assert.Equal(t, []bool{false, false}, rec.late, "called before any of the batch's Verify returned")
	require.Len(t, rec.calls[0], 1)
	assert.Equal(t, "s0", rec.calls[0][0].Attempt.Seal)
	seals := map[any]Decided{}
	for _, d := range rec.calls[1] {
		seals[d.Attempt.Seal] = d
	}
	require.Len(t, seals, 2, "s1 and s3, not the attempt without a seal: %v", seals)
	for i, s := range map[int]string{0: "s0", 1: "s1", 3: "s3"} {
		d := seals[s]
		if i == 0 {
			d = rec.calls[0][0]
		}
		assert.Equal(t, devs[i], d.Attempt.DeviceID)
		assert.Equal(t, answers[i].res, d.Result, "%s: the result Verify returned", s)
		assert.Equal(t, answers[i].err, d.Err, "%s: the error Verify returned", s)
	}
	require.NoError(t, answers[0].err)
	require.NoError(t, answers[1].err)
	require.NoError(t, answers[2].err)
	var den *Denial
	require.True(t, errors.As(answers[3].err, &den), "%v", answers[3].err)
	assert.ErrorIs(t, den, pickupcode.ErrAlreadyCollected)
	assert.True(t, den.Pending, "used, the document still there")
}
