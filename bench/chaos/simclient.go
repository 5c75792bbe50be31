package chaos

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"kluis/backend/api/apiclient"
	"kluis/simulator"
)

// SimClient is kluis-sim's control API (simulator/README.md).
type SimClient struct{ Base string }

func (s *SimClient) do(ctx context.Context, method, path string, in, out any) error {
	return apiclient.DoJSON(ctx, httpc, method, s.Base+path, "", in, out)
}

// State is the device's true physical state.
func (s *SimClient) State(ctx context.Context, dev string) (simulator.State, error) {
	var st simulator.State
	err := s.do(ctx, http.MethodGet, "/v1/devices/"+dev+"/state", nil, &st)
	return st, err
}

// Pulses are every pulse the device's locks received.
func (s *SimClient) Pulses(ctx context.Context, dev string) ([]simulator.Pulse, error) {
	var ps []simulator.Pulse
	err := s.do(ctx, http.MethodGet, "/v1/devices/"+dev+"/pulses", nil, &ps)
	return ps, err
}

// Presents are every carousel command the device received.
func (s *SimClient) Presents(ctx context.Context, dev string) ([]simulator.Present, error) {
	var ps []simulator.Present
	err := s.do(ctx, http.MethodGet, "/v1/devices/"+dev+"/presents", nil, &ps)
	return ps, err
}

// Channel runs a person's or a fault's action on a door: take, put
// (label), close, force, leave-open, stuck (on), sensor (broken).
func (s *SimClient) Channel(ctx context.Context, dev string, board, ch int, action string, q url.Values) (simulator.ActionResult, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("board", fmt.Sprint(board))
	var out simulator.ActionResult
	err := s.do(ctx, http.MethodPost, fmt.Sprintf("/v1/devices/%s/channels/%d/%s?%s", dev, ch, action, q.Encode()), nil, &out)
	return out, err
}

// Board runs a board action: reboot, watchdog, present (slot), jam, fault (on).
func (s *SimClient) Board(ctx context.Context, dev string, board int, action string, q url.Values) error {
	p := fmt.Sprintf("/v1/devices/%s/boards/%d/%s", dev, board, action)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return s.do(ctx, http.MethodPost, p, nil, nil)
}

// SetFaults replaces the device's fault settings.
func (s *SimClient) SetFaults(ctx context.Context, dev string, f simulator.Faults) error {
	return s.do(ctx, http.MethodPost, "/v1/devices/"+dev+"/faults", f, nil)
}

// Line is what a serial device's boards heard.
func (s *SimClient) Line(ctx context.Context, dev string) (simulator.LineStats, error) {
	var l simulator.LineStats
	err := s.do(ctx, http.MethodGet, "/v1/devices/"+dev+"/line", nil, &l)
	return l, err
}
