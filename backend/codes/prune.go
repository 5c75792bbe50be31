package codes

import (
	"context"
	"fmt"
	"time"

	"kluis/backend/store"
)

// PruneAttempts deletes at most limit code attempts made before cutoff,
// oldest first, in one statement (rows another replica is deleting are
// skipped), and returns how many. The limits read the attempts of the
// daily window only (Config.DailyWindow) and the follow-up sweep those of
// a day; every attempt's audit record stays. The backend calls it with
// the device retention (backend/devicelink's Pruner).
func PruneAttempts(ctx context.Context, db store.DB, cutoff time.Time, limit int) (int, error) {
	tag, err := db.Exec(ctx, `WITH doomed AS (
		SELECT id FROM code_attempts WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)
		DELETE FROM code_attempts a USING doomed WHERE a.id = doomed.id`, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("codes: prune attempts: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
