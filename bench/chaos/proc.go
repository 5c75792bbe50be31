package chaos

import (
	"context"
	"net"
	"strconv"
	"time"

	"kluis/deploy/dev/testenv"
)

// FreePort returns a free loopback TCP port (testenv.PickAddr: outside
// the ephemeral range, never twice).
func FreePort() (int, error) {
	a, err := testenv.PickAddr()
	if err != nil {
		return 0, err
	}
	_, p, _ := net.SplitHostPort(a)
	return strconv.Atoi(p)
}

// waitFor is testenv.Poll without the last observation.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string, error)) error {
	_, err := testenv.Poll(ctx, timeout, what, cond)
	return err
}
