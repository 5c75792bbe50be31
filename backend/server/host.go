package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/internal/loglimit"
)

// MisdirectedText is the body of the 421 answer to a request whose Host
// the backend does not answer to (hostGuard).
const MisdirectedText = "misdirected request: kluis-backend does not answer to this host name\n"

// hostNames are the host names the HTTP listener answers to, besides IP
// literals and localhost: the public URL's host and -allowed-hosts.
type hostNames map[string]bool

// allowedHostNames gathers the public URL's host and the allowed hosts,
// normalised (lower case, no port, no trailing dot). An allowed host that
// is not a bare host name (a scheme, a path, a port, a wildcard) is
// refused: it would never match.
func allowedHostNames(publicURL string, allowed []string) (hostNames, error) {
	names := hostNames{}
	if u, err := url.Parse(publicURL); err == nil && u.Hostname() != "" {
		names[normHost(u.Hostname())] = true
	}
	for _, h := range allowed {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/:*@ ") {
			return nil, fmt.Errorf("allowed host %q: a host name only (no scheme, port, path or wildcard)", h)
		}
		names[normHost(h)] = true
	}
	return names, nil
}

// ParseAllowedHosts splits a comma list of host names (-allowed-hosts),
// checking each as Run does.
func ParseAllowedHosts(s string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(s, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	if _, err := allowedHostNames("", out); err != nil {
		return nil, err
	}
	return out, nil
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// answers reports whether the listener answers a request with Host
// hostport: an IP literal (a rebinding page cannot make a browser send
// one for its own origin), localhost, or one of names. An empty Host (an
// HTTP/1.0 client) is answered: no browser sends one.
func (names hostNames) answers(hostport string) bool {
	if hostport == "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = normHost(host)
	return host == "localhost" || names[host]
}

// hostGuard answers 421 Misdirected Request, in plain text, to a request
// whose Host the listener does not answer to (hostNames.answers): a DNS
// rebinding page (a name of the attacker's that now resolves to the
// backend's address, opened in a browser on the city's network) is the
// backend's own origin for that browser and would otherwise read
// /metrics, or anything else a request without the console's cookies
// gets. Each refusal is counted in kluis_http_misdirected_requests_total
// (no label: the Host is the client's choice) and logged, at most a few
// lines a minute.
func hostGuard(h http.Handler, names hostNames, log *slog.Logger, reg prometheus.Registerer) (http.Handler, error) {
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "kluis_http_misdirected_requests_total",
		Help: "HTTP requests answered 421 because their Host is not an IP address, localhost, the public URL's host or one of -allowed-hosts (DNS rebinding, or a name to add to -allowed-hosts)."})
	if err := reg.Register(refused); err != nil {
		return nil, fmt.Errorf("server: register host metric: %w", err)
	}
	warn := loglimit.New(log, 5, time.Minute, time.Now)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if names.answers(r.Host) {
			h.ServeHTTP(w, r)
			return
		}
		refused.Inc()
		warn.Warn("request for a host name not answered (421): add it to -allowed-hosts if it is yours",
			"host", truncate(r.Host, 100), "path", truncate(r.URL.Path, 100))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusMisdirectedRequest)
		_, _ = w.Write([]byte(MisdirectedText))
	}), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
