package server

import (
	"fmt"
	"log/slog"
	"syscall"

	"kluis/backend/broker"
	"kluis/internal/connlimit"
)

// Descriptors is how kluis-backend shares its open-file limit
// (RLIMIT_NOFILE): the embedded broker's connection cap, the HTTP
// listener's cap, the database pool and a reserve for everything else
// (listeners, mail and SMS connections, files, the external broker's one
// connection).
type Descriptors struct {
	Limit   int
	Broker  int // the embedded broker's connection cap; 0 with an external broker
	HTTP    int // the HTTP listener's cap
	Pool    int // the database pool's connections
	Reserve int
	// HTTPClamped: the HTTP cap asked for was lowered to HTTP to fit.
	HTTPClamped bool
	// HTTPAsked is the HTTP cap asked for (the default when none was).
	HTTPAsked int
}

// Fits reports whether the caps, the pool and the reserve fit the limit.
func (d Descriptors) Fits() bool { return d.Need() <= d.Limit }

// Need is the smallest limit that holds d's caps, pool and reserve.
func (d Descriptors) Need() int { return d.Broker + d.HTTP + d.Pool + d.Reserve }

// minBrokerConnections is the least the embedded broker is given, fitting
// or not.
const minBrokerConnections = 64

// PlanDescriptors shares limit (the soft RLIMIT_NOFILE) between the
// reserve (1/32 of the limit, 64 to 1,024, as the broker's own default
// keeps), the database pool (pool), the HTTP listener (httpMax; 0 or less:
// DefaultHTTPMaxConnections for this limit) and, when embedded, the
// broker, which gets the rest, at least 64. An HTTP cap that would leave
// the broker less than 64 (or, without the embedded broker, that is over
// what remains) is clamped to what remains; a limit too small for the
// least of each is planned anyway and does not fit (Fits false).
func PlanDescriptors(limit uint64, embedded bool, httpMax, pool int) Descriptors {
	lim := int(min(limit, 1<<30))
	d := Descriptors{Limit: lim, Pool: pool, Reserve: broker.Reserve(limit)}
	if httpMax <= 0 {
		httpMax = connlimit.MaxFor(limit, httpMaxCeiling)
	}
	d.HTTP, d.HTTPAsked = httpMax, httpMax
	rest := lim - d.Reserve - d.Pool
	if embedded {
		rest -= minBrokerConnections
	}
	if d.HTTP > rest {
		d.HTTP, d.HTTPClamped = max(rest, 1), true
	}
	if embedded {
		d.Broker = max(lim-d.Reserve-d.Pool-d.HTTP, minBrokerConnections)
	}
	return d
}

// fileLimit reads the soft RLIMIT_NOFILE.
func fileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("server: open-file limit: %w", err)
	}
	return rl.Cur, nil
}

// logDescriptors says how the limit is shared (info), and warns when the
// HTTP cap was clamped or the limit is too small.
func logDescriptors(log *slog.Logger, d Descriptors) {
	attrs := []any{"limit", d.Limit, "broker_connections", d.Broker, "http_connections", d.HTTP,
		"database_pool", d.Pool, "reserve", d.Reserve}
	switch {
	case !d.Fits():
		log.Warn("the open-file limit is too small for the connection caps: raise LimitNOFILE (docs/operations.md, \"Descriptors\")",
			append(attrs, "need", d.Need())...)
	case d.HTTPClamped:
		log.Warn("-http-max-connections lowered to fit the open-file limit with the broker's connections, the database pool and the reserve; raise LimitNOFILE to keep it",
			append(attrs, "http_connections_asked", d.HTTPAsked, "need", d.Need()-d.HTTP+d.HTTPAsked)...)
	default:
		log.Info("open-file limit shared", attrs...)
	}
}
