// Package mosquitto is the production Mosquitto configuration
// (mosquitto.conf, acl, relays.acl for the Tasmota relay modules' broker,
// README.md) in this directory, embedded for the
// programs that run a Mosquitto with exactly that configuration
// (kluis-bench fleet); its test runs a real Mosquitto with it to show the
// ACL keeps devices apart.
package mosquitto

import _ "embed"

//go:embed mosquitto.conf
var config string

//go:embed acl
var acl string

// Config is mosquitto.conf.
func Config() string { return config }

// ACL is acl, the ACL file.
func ACL() string { return acl }
