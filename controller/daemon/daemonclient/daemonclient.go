// Package daemonclient reads what a running kluisd serves on its metrics
// listener (metrics_listen in its configuration, docs/kluisd.md): /healthz,
// whether it is ready, connected to the backend's broker and how many
// events wait to be acknowledged, and /metrics, its Prometheus metrics.
// Scrape and Samples read any Prometheus text endpoint (kluis-backend's
// /metrics too).
//
// The demo (cmd/kluis-demo), the system tests (controller/systemtest), the
// chaos gauntlet (bench/chaos) and the fleet bench (bench/fleet) use it. Every call takes a context and
// the client's HTTP calls have a timeout.
package daemonclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds each call when Options.HTTP is nil.
const DefaultTimeout = 30 * time.Second

// Options configure a Client.
type Options struct {
	// HTTP sends the requests; default a client with DefaultTimeout.
	HTTP *http.Client
}

// Client reads one kluisd's metrics listener.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client of the metrics listener at addr: "host:port" or a
// URL "http://host:port".
func New(addr string, opts Options) *Client {
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: DefaultTimeout}
	}
	base := strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{base: base, hc: opts.HTTP}
}

// Health is kluisd's /healthz.
type Health struct {
	// Ready: the engine runs and takes pickups (the status is 200, 503
	// otherwise).
	Ready bool `json:"ready"`
	// MQTTConnected: the link to the backend's broker is up.
	MQTTConnected bool `json:"mqtt_connected"`
	// Backlog is the number of events not yet acknowledged by the backend.
	Backlog int `json:"backlog"`
	// Operations is the number of door operations under way (which
	// compartments: the kiosk's diagnostics, for a technician logged in).
	Operations int `json:"operations"`
}

// Health reads /healthz. A kluisd that is not ready answers 503 with the
// same body: that is a Health with Ready false, not an error.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	resp, err := c.get(ctx, "/healthz")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return h, fmt.Errorf("kluisd %s/healthz: status %d", c.base, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h); err != nil {
		return h, fmt.Errorf("kluisd %s/healthz: decode: %w", c.base, err)
	}
	return h, nil
}

// Metrics reads every sample of /metrics.
func (c *Client) Metrics(ctx context.Context) (Samples, error) {
	return Scrape(ctx, c.hc, c.base+"/metrics")
}

// Metric returns the value of the first sample of metric name whose label
// set holds labels (see Samples.Value; 0 when there is none).
func (c *Client) Metric(ctx context.Context, name, labels string) (float64, error) {
	s, err := c.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return s.Value(name, labels), nil
}

func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("kluisd %s%s: %w", c.base, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kluisd %s%s: %w", c.base, path, err)
	}
	return resp, nil
}

// Sample is one line of the Prometheus text format.
type Sample struct {
	// Name is the metric's name, e.g. "kluisd_alarms_total".
	Name string
	// Labels is the label set as written between the braces, e.g.
	// `alarm="door_left_open"` ("" when there is none).
	Labels string
	Value  float64
}

// Samples are the samples of one scrape, in the endpoint's order.
type Samples []Sample

// Scrape reads the Prometheus text format at url with hc (nil: a client
// with DefaultTimeout). A status other than 200 is an error.
func Scrape(ctx context.Context, hc *http.Client, url string) (Samples, error) {
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	s, err := Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return s, nil
}

// Parse reads the Prometheus text format; comments and lines it cannot
// read are passed over.
func Parse(r io.Reader) (Samples, error) {
	var out Samples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var s Sample
		rest := ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			s.Name, s.Labels, rest = line[:i], line[i+1:j], line[j+1:]
		} else {
			var ok bool
			if s.Name, rest, ok = strings.Cut(line, " "); !ok {
				continue
			}
		}
		f := strings.Fields(rest) // value [timestamp]
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.Value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// match: the sample is of metric name and its label set holds labels
// (a part of it as written, e.g. `result="ok",source="offline"`).
func (s Sample) match(name, labels string) bool {
	return s.Name == name && strings.Contains(s.Labels, labels)
}

// Value returns the value of the first sample of metric name whose label
// set holds labels ("": any), 0 when there is none (a counter not yet
// counted).
func (ss Samples) Value(name, labels string) float64 {
	for _, s := range ss {
		if s.match(name, labels) {
			return s.Value
		}
	}
	return 0
}

// Sum returns the sum of the samples of metric name whose label set holds
// labels ("": all of them).
func (ss Samples) Sum(name, labels string) float64 {
	var sum float64
	for _, s := range ss {
		if s.match(name, labels) {
			sum += s.Value
		}
	}
	return sum
}
