// Package grafana holds two Grafana dashboards (Grafana 10/11 JSON model,
// schema 39) for Kluis: kluis-fleet.json, every device at a glance, and
// kluis-device.json, one device chosen with the `device` variable. Both take
// their Prometheus data source from the `datasource` variable, so they
// import and provision unchanged. See README.md. The Go code only embeds
// them for the tests that check their queries (deploy/prometheus).
package grafana

import "embed"

// Dashboards holds the dashboards, *.json.
//
//go:embed *.json
var Dashboards embed.FS
