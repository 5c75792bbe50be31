// Package mosquitto holds no code: this directory is the production
// Mosquitto configuration (mosquitto.conf, acl, README.md), and its test
// runs a real Mosquitto with exactly that configuration to show the ACL
// keeps devices apart.
package mosquitto
