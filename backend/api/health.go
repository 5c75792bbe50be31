package api

import (
	"context"
	_ "embed"
	"net/http"
	"time"
)

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the embedded OpenAPI 3 document.
func OpenAPI() []byte { return append([]byte(nil), openapiYAML...) }

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		s.log.Warn("readiness: database unreachable", "err", err)
		return errorf(http.StatusServiceUnavailable, "database_unavailable", "the database is not reachable")
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(openapiYAML)
	return nil
}
