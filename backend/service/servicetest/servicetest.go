// Package servicetest has recording fakes of the service hooks
// (CodeIssuer, Notifier, Purger) for tests of the service and of packages
// built on it.
package servicetest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/service"
	"kluis/backend/store"
)

// IssueCall records one Issue call.
type IssueCall struct {
	Document    store.Document
	Compartment store.Compartment
	Secret      string
}

// Codes is a recording service.CodeIssuer. Its secrets are "secret-1",
// "secret-2", ... Set FailIssue or FailRevoke to make calls fail.
type Codes struct {
	mu         sync.Mutex
	issued     []IssueCall
	revoked    []string
	FailIssue  error
	FailRevoke error
}

var _ service.CodeIssuer = (*Codes)(nil)

// Issue records the call and returns the next secret.
func (c *Codes) Issue(_ context.Context, _ pgx.Tx, doc store.Document, comp store.Compartment, _ time.Time) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.FailIssue != nil {
		return nil, c.FailIssue
	}
	s := fmt.Sprintf("secret-%d", len(c.issued)+1)
	c.issued = append(c.issued, IssueCall{Document: doc, Compartment: comp, Secret: s})
	return s, nil
}

// Revoke records the call.
func (c *Codes) Revoke(_ context.Context, _ pgx.Tx, documentID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.FailRevoke != nil {
		return c.FailRevoke
	}
	c.revoked = append(c.revoked, documentID)
	return nil
}

// Issued returns the Issue calls so far (including those of transactions
// that were later rolled back).
func (c *Codes) Issued() []IssueCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]IssueCall(nil), c.issued...)
}

// Revoked returns the document ids passed to Revoke so far.
func (c *Codes) Revoked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.revoked...)
}

// Notifier is a recording service.Notifier; set Fail to make it fail.
type Notifier struct {
	mu   sync.Mutex
	sent []service.Notification
	Fail error
}

var _ service.Notifier = (*Notifier)(nil)

// Notify records n.
func (n *Notifier) Notify(_ context.Context, x service.Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, x)
	return n.Fail
}

// Sent returns the notifications so far.
func (n *Notifier) Sent() []service.Notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]service.Notification(nil), n.sent...)
}

// Purger is a recording service.Purger.
type Purger struct {
	mu      sync.Mutex
	ids     []string
	batches []int
}

var _ service.Purger = (*Purger)(nil)

// PurgeDocuments records the ids.
func (p *Purger) PurgeDocuments(_ context.Context, _ pgx.Tx, ids []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = append(p.ids, ids...)
	p.batches = append(p.batches, len(ids))
	return nil
}

// Batches returns how many ids each call got, in order: one call per
// purge transaction.
func (p *Purger) Batches() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.batches...)
}

// IDs returns the purged ids so far.
func (p *Purger) IDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ids...)
}
