// Package tasmota drives relay modules that speak Tasmota's MQTT convention:
// a locker bank's locks, or an automaton's hatch lock and carousel.
//
// # Topics and payloads (Tasmota's)
//
//	cmnd/<topic>/PulseTime<n>  "<v>"   v 1-111: tenths of a second; 112+: seconds+100
//	cmnd/<topic>/POWER<n>      "ON" | "OFF" | "" (a query: the module answers stat POWER<n>)
//	cmnd/<topic>/Status        "10"
//	stat/<topic>/POWER<n>      "ON" | "OFF"   (a bare POWER means POWER1)
//	stat/<topic>/RESULT        {"POWER1":"ON"}
//	                           {"PulseTime1":{"Set":5,"Remaining":5}}
//	                           {"Switch1":{"Action":"ON"}}   (SetOption114 1: switches detached from relays)
//	stat/<topic>/STATUS10      {"StatusSNS":{"Time":"...","Switch1":"ON","Switch2":"OFF"}}
//	tele/<topic>/LWT           "Online" | "Offline" (retained)
//
// Commands are published with QoS 0 (at most once), not retained, and
// only while the broker connection is open; otherwise nothing is sent, not
// even later. paho stores QoS 1 messages (published while it reconnects,
// or not yet acknowledged when the connection drops) and sends them after
// the reconnection: a relay ON long after the caller was told the pulse
// failed, and a resend that races with paho's writer of the same packet
// (eclipse-paho/paho.mqtt.golang#703, seen under -race in
// TestResubscribesAfterBrokerRestart). The driver relies on its own
// confirmations instead: PulseTime and POWER<n> ON are confirmed by the
// module (a pulse refused while disconnected is counted "offline", one
// without confirmation "unconfirmed"), the queries are asked again at
// every connection and every LWT Online, and a halted driver switches
// every relay OFF again at every (re)connection, before it subscribes, so
// an OFF of Halt that could not be sent (the broker away) or was lost with
// the connection is not lost for good: when in doubt, the doors stay shut.
//
// paho's Publish waits for its writer to take the command, by default up
// to 30 s, and when the connection drops meanwhile the writer of the next
// connection takes it: a door pulse's ON could leave seconds after the
// caller was told the pulse failed (TestNoRelayOnAfterThePulseDeadline,
// through a TCP proxy that stalls the link: before, Pulse returned 1.4 to
// 1.6 s after its 3 s deadline and in one run of three the ON reached the
// module 1.4 s after it). So paho's write timeout is half of
// Options.Timeout, bounding both that wait and the write itself, and a
// PulseTime or POWER<n> ON is handed to paho only while that much time is
// left before the step's deadline (Options.Timeout from the step's start,
// or the caller's context deadline if sooner; counted "late", nothing
// sent, otherwise); the wait for the confirmation ends at the same
// deadline. That bound holds only while the pulse's goroutine and paho's
// writer run on time, so the ON is checked again where paho's writer
// writes it (the ON gate, ongate.go: TestAnOnNoPulseWaitsForIsNotWritten):
// written only for a pulse still waiting for it, before its deadline, with
// a write deadline no later than it; otherwise withheld, and the pulse
// counted "late" (nothing sent). A connection being reset takes no more
// writes. An ON written and not confirmed by then may still be
// on its way. Still in this host's kernel (written to the socket, not yet
// acknowledged by the other end: the bytes written minus SIOCOUTQ fall
// short of the ON's end), it is taken back: the driver
// resets the broker connection before the pulse is reported failed
// (SO_LINGER 0 and a disconnect of the socket, a connect to an AF_UNSPEC
// address: the kernel sends RST and discards what it held instead of
// delivering it when a stalled link comes back; paho's reads and writes
// then fail at once and paho closes it and connects again; closing it
// under paho would stop paho for good)
// (TestUndeliveredOnIsDiscardedByAReset: before, the ON reached the module
// after the pulse had failed; and in one run of three while the reset
// waited for paho's close, which came after the pulse's return). Every connection paho closes after a loss
// is closed so (kluis_tasmota_connection_resets_total); the driver's own
// Close ends gracefully. (The connection is opened by internal/mqttconn,
// as kluisd's link's is: no proxy from all_proxy, no unix sockets; a
// websocket broker gets neither the reset nor the ON gate: the
// driver does not wrap a websocket connection.) A reset cannot take back
// what already left: bytes on the wire or acknowledged by the broker's
// host (or a proxy on the way), and the broker's leg to the module, where a command has no
// expiry (Tasmota's MQTT has none; a module reconnecting to a broker that
// kept its session could still get it). So the driver then publishes
// POWER<n> OFF at once (on that connection behind the ON, or on the next
// one after a reset), and again (at every
// connection, every LWT Online of the module, and whenever a wait of
// Options.Timeout for the confirmation runs out) until the module reports
// the relay OFF after the OFF was written, or a later pulse of that relay
// was confirmed. Every unconfirmed ON counts: when a second pulse of the
// relay goes unconfirmed while the first one's OFF is awaited, the first
// OFF's confirmation does not settle the second ON, which gets an OFF of
// its own (TestEveryUnconfirmedOnGetsItsOwnOff); no OFF is sent to a
// relay while one of its pulses is in its ON step (it would cut that
// pulse short). Tasmota has no command ids: the report of a pulse ending
// by itself is taken for the confirmation too (the relay is off then, and
// the OFF, written behind the ON, still follows it).
// kluis_tasmota_relays_off_pending counts the relays still owed a
// confirmed OFF. A door that opens anyway opens
// with no operation waiting for it, and kluisd raises forced_door (door
// opened without a command). A relay reported switching on that the
// driver did not command (from a known OFF, with no pulse of it under way
// and no OFF owed to it) is someone else on the broker: LockUncommanded,
// kluis_tasmota_uncommanded_on_total (an automaton's slot relay also
// forgets the slot at the hatch). Queries (Status 10, POWER<n>) asked for by
// an LWT Online are published by a goroutine of their own, never under the
// driver's lock nor on its message loop, so a stalled link cannot hold
// back the events of the messages that still arrive
// (TestStalledQueryDoesNotHoldTheMessageLoop).
//
// # Kluis mapping (the simulator implements exactly this)
//
// A locker-bank module (Module.Relays = N) is one board (Module.Board):
//
//	POWER(i+1)    lock of channel i (ON = energised, i.e. unlocked)
//	Switch(i+1)   door contact of channel i (ON = open)
//	Switch(N+i+1) item sensor of channel i (ON = item present)
//
// An automaton module (Options.Automaton; Relays = 1 + number of slots) is a
// board with one channel (the hatch) and Relays-1 slots:
//
//	POWER1        hatch lock (channel 0)
//	POWER(s+2)    momentary pulse: bring slot s to the hatch
//	Switch1       hatch open
//	Switch2       mechanism busy (carousel moving)
//	Switch3       item at the hatch
//	Switch4       mechanism fault
//
// A stuck writer stops paho's inbound messages too (it cannot write the
// PUBACK of a QoS 1 message, and its router waits for it): meanwhile the
// driver's picture of relays and switches is stale. It never switches a
// relay on that picture: PulseTime and ON need the module's confirmation,
// which cannot arrive then (a stale report can only confirm a pulse that
// was asked for, or count an OFF as confirmed once it was written). What
// it can mislead is Hatch's slot: a Present whose trigger went out
// unconfirmed leaves the slot at the hatch unknown (-1; the carousel may
// have moved unseen), so kluisd presents again instead of opening the
// hatch onto a slot believed there (TestUnconfirmedPresentForgetsTheSlot);
// the driver logs it, and the pulse counts as "unconfirmed" in
// kluis_tasmota_pulses_total.
//
// SlotPresented is reported when, after a Present, busy was seen ON and goes
// OFF while fault is OFF; fault going ON reports MechanismFault. The module
// cycles busy for every accepted trigger, also for the slot already at the
// hatch (the Kluis convention for these modules; kluis-sim does so).
//
// # Pulses
//
// Pulse publishes PulseTime<n> and waits for the module to confirm it in a
// RESULT (Set equal to the value sent); only then does it publish POWER<n> ON
// and wait for stat POWER<n> ON (topic or RESULT), each step by its
// deadline (see above: no ON leaves paho after it). The pulse is timed by the
// module, so a lost link cannot leave a lock energised; without the
// PulseTime confirmation the relay is never switched. Tasmota has no command
// ids: a caller retrying after an unconfirmed POWER ON may pulse twice, but
// every pulse ends by itself. Halt switches every relay OFF; a driver that
// has not connected yet gets Options.Timeout to do so first, and Halt
// reports an error wrapping hardware.ErrTimeout when the broker is out of
// reach (the relays' pulses still end by themselves).
//
// # Events and state
//
// The driver subscribes to stat/<topic>/+ and tele/<topic>/LWT in paho's
// OnConnect handler (a clean session loses subscriptions on every
// reconnect) and asks every module for Status 10 and every relay's state
// (POWER<n> queries). The message handler only
// copies messages into a bounded queue; one goroutine applies them, and
// Watch delivers the resulting events (acknowledged semantics as in
// hardware.Driver). A switch's first reading sets the baseline; only changes
// make events, so QoS 1 duplicates are harmless. LWT Offline gives
// BoardOffline and makes Pulse and States fail for that module without
// sending anything; Online after Offline gives BoardOnline, and every
// (re)appearance triggers a Status 10 and POWER re-read so doors and relays
// that moved meanwhile are reported. A lost broker connection gives
// BoardOffline (Detail "broker connection lost") for every module at once;
// after the reconnection a module is online again with its retained LWT
// Online or its first answer. Malformed payloads are counted in
// kluis_tasmota_messages_total{result="malformed"} and ignored; they are
// logged bounded (internal/loglimit): the first of an episode, then at
// most a summary and one line a minute.
package tasmota
