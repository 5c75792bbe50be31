// Command kluis-backend is the Kluis central backend: the REST API for
// staff, technicians and admins, the database migrations and the device
// link over MQTT.
//
//	kluis-backend [serve] [flags]   run the server (default)
//	kluis-backend migrate [flags]   apply database migrations and exit
//	kluis-backend useradd -username NAME -role ROLE   create a user (password from KLUIS_NEW_PASSWORD or stdin)
//	kluis-backend token -username NAME -name LABEL    issue an API token for a user and print it
//	kluis-backend mqttpasswd -device ID               set a registered device's MQTT password (KLUIS_NEW_PASSWORD or generated and printed)
//	kluis-backend pubkey                              print the QR-token public key for the devices' configuration
//
// Configuration comes from flags or the environment: DATABASE_URL
// (-database-url), MQTT_URL (-mqtt-url; empty starts the embedded broker on
// KLUIS_MQTT_ADDR, default 127.0.0.1:1883), MQTT_USERNAME and MQTT_PASSWORD
// (for an external broker), KLUIS_KEY_DIR (-key-dir, code signing keys,
// default var/keys; or KLUIS_CODES_SIGNING_KEY and KLUIS_CODES_PIN_KEY),
// KLUIS_MAIL_URL, KLUIS_SMS_URL, KLUIS_SLIP_DIR, KLUIS_PUBLIC_URL and
// KLUIS_ALLOWED_HOSTS (the host names answered; see docs/api.md),
// KLUIS_HTTP_ADDR (-http-addr, default 127.0.0.1:8080), KLUIS_ADMIN_USER and
// KLUIS_ADMIN_PASSWORD (bootstrap admin created at first start; without a
// password one is generated and printed once), KLUIS_LOG_LEVEL.
//
// The flags are parsed by backend/cli; backend/server runs the server.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"kluis/backend/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
