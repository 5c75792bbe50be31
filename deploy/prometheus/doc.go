// Package prometheus holds the alert rules for kluisd and kluis-backend
// (kluis-alerts.yml), their unit tests for promtool
// (kluis-alerts.test.yml), an example central Prometheus configuration
// (prometheus.yml) and the agent configuration for a device
// (kluisd-agent.yml); see README.md. The Go code only embeds the rules;
// package promcheck finds the metric names they and the Grafana dashboards
// use, and the tests check the rules with promtool and those names against
// what the daemons really register.
package prometheus

import _ "embed"

// Rules is kluis-alerts.yml.
//
//go:embed kluis-alerts.yml
var Rules []byte
