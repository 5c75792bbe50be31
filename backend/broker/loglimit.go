package broker

import "time"

// Warnings a client can cause at will (a refused CONNECT, a protocol
// violation, an ACL denial) are logged at most logBurst times per
// logWindow for each message (internal/loglimit); the rest are counted and
// summed up in one line when the next window begins. The metrics count
// every one.
const (
	logBurst  = 20
	logWindow = 10 * time.Second
)
