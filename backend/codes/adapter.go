package codes

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
)

// Issuer adapts a Service to service.CodeIssuer: the secret Issue returns
// is a Credentials value for the Notifier.
type Issuer struct {
	// Service does the work.
	Service *Service
}

var _ service.CodeIssuer = Issuer{}

// Issue issues a code for doc in comp valid until doc.Deadline, at the
// transition's time at.
func (i Issuer) Issue(ctx context.Context, tx pgx.Tx, doc store.Document, comp store.Compartment, at time.Time) (any, error) {
	if doc.Deadline == nil {
		return nil, fmt.Errorf("codes: issue for %s: no deadline: %w", doc.ID, pickupcode.ErrInvalid)
	}
	dob := ""
	if doc.BirthDate != nil {
		dob = doc.BirthDate.Format(pickupcode.DateLayout)
	}
	dev := comp.DeviceID
	if dev == "" {
		dev = doc.DeviceID
	}
	cr, err := i.Service.Issue(ctx, tx, IssueRequest{
		DocumentID: doc.ID, DocumentKind: string(doc.Kind), BirthDate: dob, DeviceID: dev,
		Compartment: Compartment{ID: comp.ID, Number: comp.Number, Board: comp.Board, Channel: comp.Channel},
		ExpiresAt:   *doc.Deadline, At: at,
	})
	if err != nil {
		return nil, err
	}
	return cr, nil
}

// Revoke revokes every open code of the document.
func (i Issuer) Revoke(ctx context.Context, tx pgx.Tx, documentID string) error {
	_, err := i.Service.Revoke(ctx, tx, documentID)
	return err
}
