package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"kluis/simulator"
)

// Fault is one kind of fault. The gauntlet gives each fault of a night a
// seeded moment (a step of the night) and a target device; Strike injects
// the fault around that step, lets the step happen (usually a citizen's
// pickup of a loaded document through s.Collect) and heals the fault
// before it returns. A fault of the installation (broker, backend, mail)
// ignores the target's hardware.
type Fault interface {
	// Kind names the fault in the figures ("kluisd_kill_pulse").
	Kind() string
	// Applies reports whether the fault can strike node n.
	Applies(n *Node) bool
	// Strike injects the fault, runs the step and heals.
	Strike(ctx context.Context, s *Strike) error
}

// Strike is one fault's moment: the world, the target node, the document
// whose pickup is the step (nil for a fault that loads a document itself),
// and the night's seeded random stream.
type Strike struct {
	G    *Gauntlet
	W    *World
	Node *Node
	Doc  *Doc
	Rng  *rand.Rand
}

// Collect runs the citizen's pickup of s.Doc (QR or PIN by the seed);
// during, when not nil, runs while the kiosk handles the first attempt.
func (s *Strike) Collect(ctx context.Context, during func(context.Context)) bool {
	if s.Doc == nil {
		return false
	}
	return s.G.collect(ctx, s.Doc, s.Rng.IntN(2) == 0, takeAndClose, during)
}

// Sleep waits d or until ctx ends.
func (s *Strike) Sleep(ctx context.Context, d time.Duration) { s.G.sleep(ctx, d) }

// Jitter is a seeded duration in [lo, hi).
func (s *Strike) Jitter(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.Rng.Int64N(int64(hi-lo)))
}

// RestartKluisd starts the node's kluisd again and waits for it.
func (s *Strike) RestartKluisd(ctx context.Context) error {
	if err := s.Node.Proc.Start(); err != nil {
		return err
	}
	return s.W.WaitConnected(ctx, s.Node)
}

// AllFaults is every fault kind of the gauntlet.
func AllFaults() []Fault {
	return []Fault{
		kluisdKill{}, kluisdKillVerify{}, kluisdKillPulse{},
		brokerKill{}, netCut{}, lineNoise{}, boardReboot{}, watchdogRelock{},
		stuckLock{}, deadSensor{}, diskFull{}, mailGateway{fail: false}, mailGateway{fail: true},
		BackendKill{},
	}
}

// any is every node.
func anyNode(*Node) bool { return true }

// kluisdKill is kill -9 of an idle kluisd, restarted a moment later.
type kluisdKill struct{}

func (kluisdKill) Kind() string         { return "kluisd_kill" }
func (kluisdKill) Applies(n *Node) bool { return anyNode(n) }
func (kluisdKill) Strike(ctx context.Context, s *Strike) error {
	s.Node.Proc.Kill()
	s.Sleep(ctx, s.Jitter(200*time.Millisecond, 1500*time.Millisecond))
	if err := s.RestartKluisd(ctx); err != nil {
		return err
	}
	s.Collect(ctx, nil)
	return nil
}

// kluisdKillVerify is kill -9 of kluisd a seeded moment after a code was
// entered: between the verification and the pulse intent, or around it.
type kluisdKillVerify struct{}

func (kluisdKillVerify) Kind() string         { return "kluisd_kill_verify" }
func (kluisdKillVerify) Applies(n *Node) bool { return anyNode(n) }
func (kluisdKillVerify) Strike(ctx context.Context, s *Strike) error {
	delay := s.Jitter(0, 120*time.Millisecond)
	var err error
	s.Collect(ctx, func(ctx context.Context) {
		s.Sleep(ctx, delay)
		s.Node.Proc.Kill()
		s.Sleep(ctx, 300*time.Millisecond)
		err = s.RestartKluisd(ctx)
	})
	return err
}

// kluisdKillPulse is kill -9 of kluisd while the lock is energised.
type kluisdKillPulse struct{}

func (kluisdKillPulse) Kind() string         { return "kluisd_kill_pulse" }
func (kluisdKillPulse) Applies(n *Node) bool { return anyNode(n) }
func (kluisdKillPulse) Strike(ctx context.Context, s *Strike) error {
	var err error
	board, ch, _ := s.Doc.where(s.Node)
	s.Collect(ctx, func(ctx context.Context) {
		_ = waitFor(ctx, 5*time.Second, "energised", func(ctx context.Context) (bool, string, error) {
			st, err := s.W.Sim.State(ctx, s.Node.Spec.ID)
			if err != nil {
				return false, "", err
			}
			for _, c := range st.Channels {
				if c.Board == board && c.Channel == ch {
					return c.Energised || c.DoorOpen, "", nil
				}
			}
			return false, "", nil
		})
		s.Node.Proc.Kill()
		s.Sleep(ctx, 300*time.Millisecond)
		err = s.RestartKluisd(ctx)
	})
	return err
}

// brokerKill is kill -9 of the broker during a pickup and its restart:
// Mosquitto, or with the embedded broker the backend process that runs it
// (World.KillBroker).
type brokerKill struct{}

func (brokerKill) Kind() string         { return "broker_kill" }
func (brokerKill) Applies(n *Node) bool { return anyNode(n) }
func (brokerKill) Strike(ctx context.Context, s *Strike) error {
	down, up := s.Jitter(300*time.Millisecond, 1500*time.Millisecond), s.Jitter(0, 2*time.Second)
	usePIN := s.Rng.IntN(2) == 0 // drawn here: the pickup runs on another goroutine
	s.W.KillBroker()
	s.Sleep(ctx, down)
	done := make(chan struct{})
	go func() { defer close(done); s.G.collect(ctx, s.Doc, usePIN, takeAndClose, nil) }()
	s.Sleep(ctx, up)
	err := s.W.StartBroker(ctx) // on the test's goroutine: it may fail the test
	<-done
	return err
}

// netCut cuts the network between the device and the broker for a
// pickup (verified offline) and restores it.
type netCut struct{}

func (netCut) Kind() string         { return "net_cut" }
func (netCut) Applies(n *Node) bool { return anyNode(n) }
func (netCut) Strike(ctx context.Context, s *Strike) error {
	s.Node.Proxy.Cut()
	defer s.Node.Proxy.Restore()
	_ = waitFor(ctx, 20*time.Second, s.Node.Spec.ID+" sees the link down", func(ctx context.Context) (bool, string, error) {
		h, err := s.Node.Kluisd.Health(ctx)
		return err == nil && !h.MQTTConnected, "", err
	})
	if s.Collect(ctx, nil) {
		s.G.stats.OfflinePickups++
	}
	return nil
}

// lineNoise drops and corrupts serial bytes in both directions (requests
// too: the boards answer NAK BAD_CRC and the parsers resynchronise) during
// a pickup.
type lineNoise struct{}

func (lineNoise) Kind() string         { return "line_noise" }
func (lineNoise) Applies(n *Node) bool { return n.Spec.Serial() }
func (lineNoise) Strike(ctx context.Context, s *Strike) error {
	dev := s.Node.Spec.ID
	before, _ := s.W.Sim.Line(ctx, dev)
	p := 0.005 + s.Rng.Float64()*0.025
	if _, err := s.W.Sim.SetFaults(ctx, dev, simulator.Faults{Line: simulator.LineFaults{Drop: p, Corrupt: p}}); err != nil {
		return err
	}
	s.Collect(ctx, nil)
	if _, err := s.W.Sim.SetFaults(ctx, dev, simulator.Faults{}); err != nil {
		return err
	}
	after, _ := s.W.Sim.Line(ctx, dev)
	s.G.stats.BadFramesHeard += int(after.BadFrames - before.BadFrames)
	return nil
}

// boardReboot reboots the device's board a seeded moment into a pickup.
type boardReboot struct{}

func (boardReboot) Kind() string         { return "board_reboot" }
func (boardReboot) Applies(n *Node) bool { return anyNode(n) }
func (boardReboot) Strike(ctx context.Context, s *Strike) error {
	delay := s.Jitter(0, 400*time.Millisecond)
	var err error
	s.Collect(ctx, func(ctx context.Context) {
		s.Sleep(ctx, delay)
		_, err = s.W.Sim.Board(ctx, s.Node.Spec.ID, 0, "reboot", nil)
	})
	return err
}

// watchdogRelock fires a Kluis board's watchdog (every lock relocked, a
// WATCHDOG event queued) a seeded moment into a pickup.
type watchdogRelock struct{}

func (watchdogRelock) Kind() string         { return "watchdog_relock" }
func (watchdogRelock) Applies(n *Node) bool { return n.Spec.Hardware == HWKluis }
func (watchdogRelock) Strike(ctx context.Context, s *Strike) error {
	delay := s.Jitter(0, 400*time.Millisecond)
	var err error
	s.Collect(ctx, func(ctx context.Context) {
		s.Sleep(ctx, delay)
		_, err = s.W.Sim.Board(ctx, s.Node.Spec.ID, 0, "watchdog", nil)
	})
	return err
}

// stuckLock sticks the lock of the document's compartment: the pulse does
// not open it (open_not_detected); then the lock is freed and the citizen
// tries again.
type stuckLock struct{}

func (stuckLock) Kind() string         { return "stuck_lock" }
func (stuckLock) Applies(n *Node) bool { return anyNode(n) }
func (stuckLock) Strike(ctx context.Context, s *Strike) error {
	dev := s.Node.Spec.ID
	board, ch, _ := s.Doc.where(s.Node)
	if _, err := s.W.Sim.Channel(ctx, dev, board, ch, "stuck", url.Values{"on": {"true"}}); err != nil {
		return err
	}
	gr := s.G.ledger.open(dev, board, ch, "pickup (stuck) "+s.Doc.Number)
	_, _ = kioskPost(ctx, s.Node, "/kiosk/v1/pickup", map[string]string{"qr": s.Doc.QR})
	_, _ = waitScreen(ctx, s.Node, 15*time.Second, "not_opened", "idle")
	s.G.ledger.close(gr)
	if _, err := s.W.Sim.Channel(ctx, dev, board, ch, "stuck", url.Values{"on": {"false"}}); err != nil {
		return err
	}
	s.Collect(ctx, nil)
	return nil
}

// deadSensor breaks the door sensor of the document's compartment for its
// pickup.
type deadSensor struct{}

func (deadSensor) Kind() string         { return "dead_sensor" }
func (deadSensor) Applies(n *Node) bool { return anyNode(n) }
func (deadSensor) Strike(ctx context.Context, s *Strike) error {
	dev := s.Node.Spec.ID
	board, ch, _ := s.Doc.where(s.Node)
	if _, err := s.W.Sim.Channel(ctx, dev, board, ch, "sensor", url.Values{"broken": {"true"}}); err != nil {
		return err
	}
	s.Collect(ctx, nil)
	_, err := s.W.Sim.Channel(ctx, dev, board, ch, "sensor", url.Values{"broken": {"false"}})
	return err
}

// diskFull fills the file system of the device's journal; a pickup is
// tried (no door may open without its intent journaled); then the disk is
// freed and the citizen tries again.
type diskFull struct{}

func (diskFull) Kind() string         { return "disk_full" }
func (diskFull) Applies(n *Node) bool { return n.Mounted }
func (diskFull) Strike(ctx context.Context, s *Strike) error {
	filler := filepath.Join(s.Node.JournalDir, "chaos-filler")
	if err := fill(filler); err != nil {
		return err
	}
	dev := s.Node.Spec.ID
	board, ch, _ := s.Doc.where(s.Node)
	before, err := s.W.Sim.Pulses(ctx, dev)
	if err != nil {
		return err
	}
	start := time.Now().Add(-time.Second)
	gr := s.G.ledger.open(dev, board, ch, "pickup (disk full) "+s.Doc.Number)
	sc, _ := kioskPost(ctx, s.Node, "/kiosk/v1/pickup", map[string]string{"qr": s.Doc.QR})
	s.Sleep(ctx, 2*time.Second)
	after, err := s.W.Sim.Pulses(ctx, dev)
	if err != nil {
		return err
	}
	s.G.scan.read(dev, s.Node.JournalDir)
	for _, p := range after[len(before):] {
		journaled := s.G.scan.intentSince(dev, p.Board, p.Channel, start)
		if p.CommandID != 0 {
			journaled = s.G.scan.intent(dev, p.CommandID)
		}
		if !journaled {
			s.G.violate("pulse on a full disk", fmt.Sprintf("%s b%d/c%d pulsed (id %d) while the journal could not be written; kiosk %s", dev, p.Board, p.Channel, p.CommandID, sc.State))
		}
	}
	// Whatever the door did, the citizen closes it if it opened.
	takeIfOpen := func(wait time.Duration) bool {
		if err := s.G.waitDoor(ctx, dev, board, ch, true, wait); err != nil {
			return false
		}
		if item, err := s.G.take(ctx, dev, board, ch); err == nil && item == s.Doc.Label {
			s.Doc.Taken = true
			s.G.stats.Pickups++
		}
		_ = s.G.shut(ctx, dev, board, ch)
		return true
	}
	takeIfOpen(500 * time.Millisecond)
	if err := os.Remove(filler); err != nil {
		s.G.ledger.close(gr)
		return err
	}
	// The citizen waits at the kiosk until kluisd is done: an operation
	// may go on once the journal takes writes again (an automaton's slot
	// presented behind a hardware event the full disk refused opens the
	// hatch late, gauntlet seed 4242 with CHAOS_FAILOVER=1, night 2).
	_ = waitFor(ctx, 20*time.Second, dev+" pickup on a full disk over", func(ctx context.Context) (bool, string, error) {
		if !s.Doc.Taken && takeIfOpen(300*time.Millisecond) {
			return false, "door opened late", nil
		}
		sc, err := s.Node.Kiosk.Session(ctx)
		if err != nil {
			return false, "", err
		}
		switch sc.State {
		case "open", "presenting", "verifying":
			return false, sc.State, nil
		}
		return true, sc.State, nil
	})
	s.G.ledger.close(gr)
	if end, err := s.W.Sim.Pulses(ctx, dev); err == nil && len(end) == len(before) {
		s.G.stats.DiskFullRefused++
	}
	s.G.waitNodeUp(ctx, s.Node)
	if !s.Doc.Taken {
		s.Collect(ctx, nil)
	}
	return nil
}

// fill writes zeros to path until the file system is full.
func fill(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := 0; i < 1<<14; i++ {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				// The last bytes: fill every remaining block.
				small := buf[:512]
				for {
					if _, err := f.Write(small); err != nil {
						return nil
					}
				}
			}
			return err
		}
	}
	return fmt.Errorf("chaos: %s did not fill up", path)
}

// mailGateway makes the e-mail and SMS gateways slow or failing while
// staff load a document: the citizen must still be told.
type mailGateway struct{ fail bool }

func (m mailGateway) Kind() string {
	if m.fail {
		return "mail_failing"
	}
	return "mail_slow"
}
func (mailGateway) Applies(n *Node) bool { return anyNode(n) }
func (m mailGateway) Strike(ctx context.Context, s *Strike) error {
	mode, delay := GatewaySlow, s.Jitter(2*time.Second, 6*time.Second)
	if m.fail {
		mode = GatewayFailing
	}
	s.W.Mail.SetMode(mode, delay)
	s.W.SMS.SetMode(mode, delay)
	d, err := s.G.register(ctx, "eid", s.Node.Spec.ID)
	if err != nil {
		s.W.Mail.SetMode(GatewayOK, 0)
		s.W.SMS.SetMode(GatewayOK, 0)
		return err
	}
	s.G.load(ctx, d)
	s.Sleep(ctx, s.Jitter(time.Second, 3*time.Second))
	s.W.Mail.SetMode(GatewayOK, 0)
	s.W.SMS.SetMode(GatewayOK, 0)
	return nil
}

// BackendKill is kill -9 of a backend process a seeded moment into a
// pickup, restarted a moment later. With several backends it kills a
// seeded one (a replica); the others keep serving.
type BackendKill struct{}

// Kind names the fault.
func (BackendKill) Kind() string { return "backend_kill" }

// Applies to every node: the backend serves them all.
func (BackendKill) Applies(n *Node) bool { return anyNode(n) }

// Strike kills a backend during a pickup and restarts it.
func (BackendKill) Strike(ctx context.Context, s *Strike) error {
	i := s.Rng.IntN(len(s.W.Backends))
	delay := s.Jitter(0, 300*time.Millisecond)
	down := s.Jitter(200*time.Millisecond, 1500*time.Millisecond)
	var err error
	s.Collect(ctx, func(ctx context.Context) {
		s.Sleep(ctx, delay)
		s.W.Backends[i].Proc.Kill()
		s.Sleep(ctx, down)
		err = s.W.StartBackend(ctx, i)
	})
	if !s.W.Backends[i].Proc.Running() && err == nil {
		err = s.W.StartBackend(ctx, i)
	}
	return err
}

// DBFailover loses the database's machine during a pickup: the
// PostgreSQL primary is killed (SIGKILL of its whole process group) a
// seeded moment into the pickup and the synchronous standby promoted a
// seeded moment later, as a failover manager would; the backends find the
// new primary by themselves (both hosts, target_session_attrs=read-write).
// Then a new standby is made from a fresh base backup in the lost
// machine's place, so that the next db_failover has one. Only in a world
// on a pair (Options.Failover); the night's checks read the promoted
// primary.
type DBFailover struct{}

// Kind names the fault.
func (DBFailover) Kind() string { return "db_failover" }

// Applies to every node: the database serves them all.
func (DBFailover) Applies(n *Node) bool { return anyNode(n) }

// Strike fails the database over during a pickup and gives the new
// primary a standby.
func (DBFailover) Strike(ctx context.Context, s *Strike) error {
	pair := s.W.Pair
	if pair == nil {
		return errors.New("db_failover: the world has no standby (Options.Failover, CHAOS_FAILOVER=1)")
	}
	delay := s.Jitter(0, 300*time.Millisecond)
	down := s.Jitter(500*time.Millisecond, 2*time.Second)
	usePIN := s.Rng.IntN(2) == 0 // drawn here: the pickup runs on another goroutine
	done := make(chan struct{})
	go func() { defer close(done); s.G.collect(ctx, s.Doc, usePIN, takeAndClose, nil) }()
	// pgpair fails the test on its own errors: on the test's goroutine.
	s.Sleep(ctx, delay)
	standby := pair.StandbyPort
	pair.KillPrimary()
	s.Sleep(ctx, down)
	pair.Promote()
	<-done
	pair.Rebuild()
	// The harness's connections went down with the primary: the checks
	// read the promoted one.
	s.W.DB.Reset()
	var port int
	var recovery bool
	if err := s.W.DB.QueryRow(ctx, `SELECT current_setting('port')::int, pg_is_in_recovery()`).Scan(&port, &recovery); err != nil {
		return fmt.Errorf("db_failover: the promoted primary: %w", err)
	}
	if port != standby || recovery {
		return fmt.Errorf("db_failover: the checks read port %d (in recovery: %v), want the promoted standby's %d", port, recovery, standby)
	}
	return nil
}
