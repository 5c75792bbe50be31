package api

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the embedded OpenAPI 3 document.
func OpenAPI() []byte { return append([]byte(nil), openapiYAML...) }

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// ready is the readiness check of /readyz and kluis_api_ready: the
// database answers within 2 s, and Options.Ready (when set) passes.
func (s *Server) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return &notReady{code: "database_unavailable", msg: "the database is not reachable", err: err}
	}
	if s.readyCheck != nil {
		if err := s.readyCheck(ctx); err != nil {
			// The broker's error names its listen address (accept tcp
			// 10.0.0.5:8883: ...): the log has it, anyone who asks
			// /readyz gets a stable word.
			return &notReady{code: "not_ready", msg: "not ready: the embedded MQTT broker does not accept connections",
				details: map[string]string{"broker": "not_accepting"}, err: err}
		}
	}
	return nil
}

// notReady is a failed readiness check: msg and details are what /readyz
// says, err (logged only) the cause.
type notReady struct {
	code, msg string
	details   any
	err       error
}

// Error is what is logged: the message and the cause.
func (e *notReady) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}
func (e *notReady) Unwrap() error { return e.err }

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.ready(r.Context()); err != nil {
		s.log.Warn("readiness check failed", "err", err)
		var nr *notReady
		if errors.As(err, &nr) {
			e := errorf(http.StatusServiceUnavailable, nr.code, "%s", nr.msg)
			e.Details = nr.details
			return e
		}
		return errorf(http.StatusServiceUnavailable, "not_ready", "not ready")
	}
	body := map[string]string{"status": "ready"}
	if s.brokerFull != nil {
		// A full broker is said, not failed: readiness takes a replica
		// out of the HTTP balancer, which does not route the devices'
		// MQTT; the API, console and track pages still serve, and with
		// every replica full (a fleet reconnecting at once) failing
		// would take the whole API away while the broker refuses the
		// excess devices cleanly and they retry (docs/operations.md).
		body["broker"] = "accepting"
		if s.brokerFull() {
			body["broker"] = "full"
		}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// newReadyGauge is kluis_api_ready, the readiness check run at scrape time.
func (s *Server) newReadyGauge() prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kluis", Subsystem: "api", Name: "ready",
		Help: "1 when this replica's readiness check (as /readyz: the database answers within 2 s and the embedded broker accepts) passes at scrape time, else 0."},
		func() float64 {
			if s.ready(context.Background()) != nil {
				return 0
			}
			return 1
		})
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(openapiYAML)
	return nil
}
