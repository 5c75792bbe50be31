package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/store"
)

// DefaultReminderLead is how long before the deadline the reminder goes out.
const DefaultReminderLead = 48 * time.Hour

// DueReminders lists (at most limit) documents waiting in a compartment
// whose deadline falls within lead from now and whose holder got no
// reminder yet. The caller (the scheduler) runs the service's reminder use
// case for each, which ends in Notify with kind "reminder".
func DueReminders(ctx context.Context, db store.DB, now time.Time, lead time.Duration, limit int) ([]string, error) {
	if lead <= 0 {
		lead = DefaultReminderLead
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := db.Query(ctx, `SELECT d.id::text FROM documents d
		WHERE d.state IN ('loaded', 'notified') AND d.deadline > $1 AND d.deadline <= $2
		AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.document_id = d.id AND n.kind = 'reminder' AND n.status = 'sent')
		ORDER BY d.deadline, d.id LIMIT $3`, now, now.Add(lead), limit)
	if err != nil {
		return nil, fmt.Errorf("notify: due reminders: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("notify: due reminders: %w", err)
	}
	return ids, nil
}
