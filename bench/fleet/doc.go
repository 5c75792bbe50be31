// Package fleet is kluis-bench's fleet subcommand: a whole fleet of
// simulated devices on one kluis-backend with its embedded broker.
//
// It runs the backend in a child process of its own (kluis-bench itself,
// re-executed with KLUIS_BENCH_FLEET_ROLE=backend) so that its CPU and
// memory are measured apart from the devices, and the devices in further
// child processes (role devices, -per-worker each: every device holds a
// socket and its journal's file, and a process may open 20,000 files).
// Each device is kluisd's real connection (controller/link with a
// controller/journal on tmpfs): MQTT login with its own user name,
// subscriptions, presence with its last will, heartbeats of about 1.4 KB.
//
// The run, in order:
//
//  1. cold connects: -cold devices log in for the first time, each
//     verifying its argon2id password at production cost;
//  2. the rest of the fleet connects (their successful checks seeded as
//     an earlier run would have left them, so the setup does not take
//     N × 80 ms), and the run waits until the database shows every device
//     online; the report says where the time went (the workers' start
//     loops, journal.Open and link.New per device, link.Run to connected,
//     the CPU of the backend and of the workers, the credential checks and
//     the broker's per-address cap), and -profile DIR keeps CPU profiles
//     of the backend and of each worker over this phase;
//  3. steady state for -measure: the backend's CPU and resident memory
//     (per device: the growth over the idle backend), heartbeats sent by
//     the devices against those the backend recorded, every device's last
//     heartbeat in the database;
//  4. reconnect storm: the backend is stopped and started again (the
//     embedded broker with it); the time until every device is connected
//     and recorded online again;
//  5. the whole fleet disconnects (each device says offline); the time
//     until the online count (database and gauge) is exactly 0.
//
// With -broker mosquitto the devices connect to a private Mosquitto
// instead (deploy/mosquitto's configuration and ACL, on a free port, its
// open-file limit raised to the hard limit), every device with a user and
// password of its own, and the backend is Mosquitto's client; the storm is
// a Mosquitto crash (SIGKILL) and restart, over when every device's new
// online presence is in the database. Mosquitto's CPU and resident memory
// are measured next to the backend's; the report counts what Mosquitto's
// log says about its clients before the crash and after the restart
// (connects, keepalive timeouts, take-overs, dropped-message warnings),
// its $SYS count of dropped messages, and the machine's load average at
// the end of each phase (-mosquitto-log keeps the whole log).
//
// Workers talk to the parent over stdin/stdout: "stat" asks for a JSON
// line of counters; SIGTERM stops them (each device says offline).
package fleet
