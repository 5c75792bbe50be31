package deviceops

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"kluis/backend/codes"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// VerifierOptions configure NewVerifier.
type VerifierOptions struct {
	// Codes checks the codes (required).
	Codes *codes.Service
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Clock gives the time (for retry_after_s); default time.Now.
	Clock func() time.Time
	// Seal gives every QR attempt a seal (codes.Attempt.Seal), so that the
	// codes service's sealer (an AnswerSigner in "kr2" form, set as
	// codes.Options.Sealer) signs a batch's answers together; the
	// answers come back signed. Off: every answer is signed by itself.
	Seal bool
}

// Verifier answers kiosk code verifications with backend/codes; it
// implements devicelink.Verifier.
type Verifier struct {
	codes *codes.Service
	log   *slog.Logger
	now   func() time.Time
	seal  bool
}

// NewVerifier returns a Verifier.
func NewVerifier(o VerifierOptions) *Verifier {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Verifier{codes: o.Codes, log: o.Logger.With("part", "verifier"), now: o.Clock, seal: o.Seal}
}

// Verify answers one request; see the package doc for the kiosk-safe
// results. An answer signed with its batch's (Options.Seal) comes back
// with its sig and the request's id.
func (v *Verifier) Verify(ctx context.Context, deviceID string, req wire.VerifyRequest) wire.VerifyResponse {
	a := codes.Attempt{DeviceID: deviceID}
	switch req.Method {
	case wire.MethodQR:
		a.QRToken = req.Token
	case wire.MethodPIN:
		a.PIN, a.BirthDate = req.PIN, req.BirthDate
	default:
		return wire.VerifyResponse{Result: wire.VerifyWrongCode}
	}
	var seal *answerSeal
	if v.seal && req.Method == wire.MethodQR {
		seal = &answerSeal{device: deviceID, id: req.ID}
		a.Seal = seal
	}
	res, err := v.codes.Verify(ctx, a)
	if seal != nil && seal.res.Sig != "" {
		return seal.res
	}
	var d *codes.Denial
	if err != nil && !errors.As(err, &d) {
		v.log.Warn("code verification failed", "device", deviceID, "err", err)
	}
	return verifyAnswer(res, err, v.now())
}

// verifyAnswer is the kiosk-safe answer to a verification that gave res
// or err (a *codes.Denial, or an infrastructure failure: unavailable).
func verifyAnswer(res codes.Result, err error, now time.Time) wire.VerifyResponse {
	if err == nil {
		return wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: res.DocumentID,
			Addr: &wire.Address{Board: res.Board, Channel: res.Channel}}
	}
	var d *codes.Denial
	if !errors.As(err, &d) {
		return wire.VerifyResponse{Result: wire.VerifyUnavailable}
	}
	switch pickupcode.Reason(err) {
	case pickupcode.ReasonExpired:
		return wire.VerifyResponse{Result: wire.VerifyExpired}
	case pickupcode.ReasonAlreadyCollected:
		if d.Pending {
			// Accepted before, the document still there: not collected.
			return wire.VerifyResponse{Result: wire.VerifyPending}
		}
		return wire.VerifyResponse{Result: wire.VerifyAlreadyCollected}
	case pickupcode.ReasonSecondFactorRequired:
		return wire.VerifyResponse{Result: wire.VerifySecondFactorRequired}
	case pickupcode.ReasonDeviceLockedOut:
		secs := int(d.LockedUntil.Sub(now).Seconds()) + 1
		return wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: max(secs, 1)}
	}
	// Wrong code, wrong device, locked code, invalid input: the kiosk shows
	// "wrong code" for all of them.
	return wire.VerifyResponse{Result: wire.VerifyWrongCode}
}
