// Package bench holds what every subcommand of kluis-bench shares: the
// environment a run measures in ([Env]: the PostgreSQL server, the MQTT
// broker, where results go), the result of a run ([Report] with its
// [Figure]s, each a measurement against its floor), throw-away databases
// ([TempDatabase]) and small statistics ([Percentile]).
//
// A subcommand lives in its own package under bench/ (bench/verify, ...),
// exports
//
//	func Run(ctx context.Context, env bench.Env, args []string) (bench.Report, error)
//
// parses its own flags from args, starts the real parts it measures itself,
// measures each figure against its floor in the same run, interleaved, and
// returns the report; cmd/kluis-bench writes it to bench/results/ (one JSON
// and one Markdown file per run) and prints the summary. Timing goals live
// here and in docs/performance.md, never in tests.
package bench
