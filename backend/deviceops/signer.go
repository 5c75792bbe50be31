package deviceops

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/controller/wire"
)

// CommandLink is what sends commands to devices and reads their results
// (devicelink.Link, or a SignedLink around it).
type CommandLink interface {
	// SendCommand stores and publishes cmd for device; it returns the
	// command id.
	SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error)
	// CommandStatus reads what became of a command.
	CommandStatus(ctx context.Context, id string) (devicelink.CommandState, error)
	// Presence reads a device's stored presence.
	Presence(ctx context.Context, device string) (devicelink.PresenceState, error)
}

// SignedLinkOptions configure NewSignedLink.
type SignedLinkOptions struct {
	// Link sends the signed commands (required).
	Link *devicelink.Link
	// Key is the backend's signing key, the one devices know the public
	// half of (codes.Keys.Signing; required).
	Key ed25519.PrivateKey
	// TTL is the expiry a command without one gets; default 5 minutes
	// (at most wire.MaxCommandLifetime).
	TTL time.Duration
	// Clock gives the time; default time.Now.
	Clock func() time.Time
}

// SignedLink signs every command it sends with the backend's key for the
// device it goes to (wire.SignCommand): kluisd carries out no command
// without such a signature, so the broker's ACL is no longer the only
// thing between a stolen credential and the doors. It implements
// CommandLink and CommandSender.
type SignedLink struct {
	*devicelink.Link
	key ed25519.PrivateKey
	ttl time.Duration
	now func() time.Time
}

// NewSignedLink returns a SignedLink.
func NewSignedLink(o SignedLinkOptions) (*SignedLink, error) {
	if o.Link == nil || len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("deviceops: a signed link needs a device link and the signing key")
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Minute
	}
	o.TTL = min(o.TTL, wire.MaxCommandLifetime)
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &SignedLink{Link: o.Link, key: o.Key, ttl: o.TTL, now: o.Clock}, nil
}

// SendCommand fills in a missing id, issue time and expiry, signs cmd for
// device and sends it.
func (s *SignedLink) SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error) {
	now := s.now().UTC()
	if cmd.ID == "" {
		cmd.ID = wire.NewID(now)
	}
	if cmd.Issued.IsZero() {
		cmd.Issued = now
	}
	if cmd.Expires.IsZero() {
		cmd.Expires = cmd.Issued.Add(s.ttl)
	}
	if err := wire.SignCommand(s.key, device, &cmd); err != nil {
		return "", fmt.Errorf("deviceops: sign command: %w", err)
	}
	return s.Link.SendCommand(ctx, device, cmd)
}

// AnswerForm is how the answers of one codes verify batch are signed.
type AnswerForm string

// The answer forms (docs/security.md, "Answers signed in groups";
// docs/operations.md, "Upgrading to answers signed in groups").
const (
	// AnswerKR1: every answer has a signature of its own ("KR1."), which
	// every kluisd since signed answers checks. The default.
	AnswerKR1 AnswerForm = "kr1"
	// AnswerKR2: the answers of one verify batch (two or more) share one
	// signature ("KR2.", wire.SignResponseGroup); every other answer is
	// "KR1.". Only for a fleet whose kluisd all check "KR2." (4f1455c on);
	// devices still on an older kluisd are listed in
	// AnswerSignerOptions.KR1Devices.
	AnswerKR2 AnswerForm = "kr2"
)

// ParseAnswerForm reads "kr1" or "kr2" ("" is "kr1").
func ParseAnswerForm(s string) (AnswerForm, error) {
	switch f := AnswerForm(strings.ToLower(strings.TrimSpace(s))); f {
	case "", AnswerKR1:
		return AnswerKR1, nil
	case AnswerKR2:
		return f, nil
	}
	return "", fmt.Errorf("deviceops: answer signature %q: want kr1 or kr2", s)
}

// AnswerSignerOptions configure NewAnswerSigner.
type AnswerSignerOptions struct {
	// Key is the backend's signing key (codes.Keys.Signing; required), the
	// one that signs commands.
	Key ed25519.PrivateKey
	// TTL is how long an answer's signature is valid; default
	// wire.ResponseTTL (at most wire.MaxResponseLifetime).
	TTL time.Duration
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Form is how a verify batch's answers are signed; default AnswerKR1.
	Form AnswerForm
	// KR1Devices are devices that get "KR1." answers only, whatever Form
	// says (an older kluisd that cannot check "KR2.").
	KR1Devices []string
	// Registerer receives the signer's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// AnswerSigner signs every answer to a device's verify and staff requests
// for that device and request (wire.SignResponse): kluisd acts on no answer
// without such a signature, so whoever can publish on a device's response
// topics cannot answer its pending request with "ok".
//
// In the "kr2" form it is also the codes service's sealer
// (codes.Options.Sealer): the answers of one verify batch are signed
// together once the batch has committed (SealBatch), with one signature.
type AnswerSigner struct {
	key   ed25519.PrivateKey
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger
	form  AnswerForm
	kr1   map[string]bool // devices that get "KR1." only
	sigs  *prometheus.CounterVec
	signd *prometheus.CounterVec
}

// NewAnswerSigner returns an AnswerSigner.
func NewAnswerSigner(o AnswerSignerOptions) (*AnswerSigner, error) {
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("deviceops: an answer signer needs the signing key")
	}
	if o.TTL <= 0 {
		o.TTL = wire.ResponseTTL
	}
	o.TTL = min(o.TTL, wire.MaxResponseLifetime)
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	form, err := ParseAnswerForm(string(o.Form))
	if err != nil {
		return nil, err
	}
	s := &AnswerSigner{key: o.Key, ttl: o.TTL, now: o.Clock, log: o.Logger.With("part", "answer-signer"), form: form,
		kr1: map[string]bool{},
		sigs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_device_answer_signatures_total",
			Help: "Signatures made for answers to devices' verify and staff requests, by form (kr1: one answer; kr2: a verify batch's answers together).",
		}, []string{"form"}),
		signd: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_device_answers_signed_total",
			Help: "Answers to devices' verify and staff requests signed, by form (over kluis_device_answer_signatures_total: answers per signature).",
		}, []string{"form"}),
	}
	for _, d := range o.KR1Devices {
		s.kr1[d] = true
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{s.sigs, s.signd} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("deviceops: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Form is the form the signer signs a verify batch's answers in.
func (s *AnswerSigner) Form() AnswerForm { return s.form }

// answerSeal is a verify request's codes.Attempt.Seal: who asked, which
// request, and the answer once its batch signed it (Sig set).
type answerSeal struct {
	device, id string
	res        wire.VerifyResponse
}

// SealBatch implements codes.Sealer: in the "kr2" form the answers of the
// batch's attempts (sealed by a Verifier with Seal) are built and signed
// together, one signature for each group of at most
// wire.MaxResponseGroup; a device in KR1Devices, and a batch with a single
// answer, are left to be signed alone ("KR1."), as is every answer in
// the "kr1" form. Called once the batch has committed, before the
// attempts' callers are woken, so no answer waits for another's request.
func (s *AnswerSigner) SealBatch(decided []codes.Decided) {
	if s.form != AnswerKR2 {
		return
	}
	now := s.now()
	exp := now.Add(s.ttl)
	seals := make([]*answerSeal, 0, len(decided))
	leaves := make([]*wire.ResponseLeaf, 0, len(decided))
	for _, d := range decided {
		a, ok := d.Attempt.Seal.(*answerSeal)
		if !ok || s.kr1[a.device] {
			continue
		}
		a.res = verifyAnswer(d.Result, d.Err, now)
		a.res.ID = a.id
		l, err := wire.PrepareResponse(a.device, &a.res, exp)
		if err != nil {
			// Left to be signed alone (which answers unavailable if it
			// cannot be signed either).
			a.res = wire.VerifyResponse{}
			continue
		}
		seals = append(seals, a)
		leaves = append(leaves, l)
	}
	for len(leaves) >= 2 {
		n := min(len(leaves), wire.MaxResponseGroup)
		if len(leaves)-n == 1 {
			n-- // no group of one after this one
		}
		if err := wire.SignResponseGroup(s.key, leaves[:n]); err != nil {
			s.log.Error("verify answers not signed together; signing each alone", "answers", n, "err", err)
			break
		}
		s.sigs.WithLabelValues(string(AnswerKR2)).Inc()
		s.signd.WithLabelValues(string(AnswerKR2)).Add(float64(n))
		leaves, seals = leaves[n:], seals[n:]
	}
	for _, a := range seals {
		a.res = wire.VerifyResponse{} // not signed together: signed alone
	}
}

// Verifier returns v with every answer signed.
func (s *AnswerSigner) Verifier(v devicelink.Verifier) devicelink.Verifier {
	return devicelink.VerifierFunc(func(ctx context.Context, device string, req wire.VerifyRequest) wire.VerifyResponse {
		res := v.Verify(ctx, device, req)
		if res.Sig != "" && res.ID == req.ID {
			return res // signed with its batch's answers (SealBatch)
		}
		res.ID = req.ID
		if err := s.sign(device, &res); err != nil {
			// A handler bug: answer unavailable (signed, so the device
			// tries offline without reporting a forgery).
			s.log.Error("verify answer not signed; answering unavailable", "device", device, "err", err)
			res = wire.VerifyResponse{ID: req.ID, Result: wire.VerifyUnavailable}
			_ = s.sign(device, &res)
		}
		return res
	})
}

// Staff returns h with every answer signed.
func (s *AnswerSigner) Staff(h devicelink.StaffHandler) devicelink.StaffHandler {
	return devicelink.StaffHandlerFunc(func(ctx context.Context, device string, req wire.StaffRequest) wire.StaffResponse {
		res := h.HandleStaff(ctx, device, req)
		res.ID, res.Op = req.ID, req.Op
		if err := s.sign(device, &res); err != nil {
			s.log.Error("staff answer not signed; answering unavailable", "device", device, "op", req.Op, "err", err)
			res = wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffUnavailable}
			_ = s.sign(device, &res)
		}
		return res
	})
}

func (s *AnswerSigner) sign(device string, m wire.Message) error {
	if err := wire.SignResponse(s.key, device, m, s.now().Add(s.ttl)); err != nil {
		return err
	}
	s.sigs.WithLabelValues(string(AnswerKR1)).Inc()
	s.signd.WithLabelValues(string(AnswerKR1)).Inc()
	return nil
}

// Sign signs an answer (a *wire.VerifyResponse or *wire.StaffResponse
// with its request's id) for device, as Verifier and Staff sign theirs:
// devicelink.Options.SignAnswer, for the link's own answers (a request
// over the device's budget answered "unavailable").
func (s *AnswerSigner) Sign(device string, m wire.Message) error {
	if err := s.sign(device, m); err != nil {
		return fmt.Errorf("deviceops: sign answer: %w", err)
	}
	return nil
}
