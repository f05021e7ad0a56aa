// Package bench is the end-to-end benchmark behind `make bench`; it has no
// code outside its tests.
//
// TestBench starts its own redis-server (AOF, appendfsync everysec, with a
// pass under always), a Vault server and the real jetond binary in its
// production shape (mutual TLS on both listeners, audit log on, Redis and
// Vault backends, budgets set high enough never to refuse), all on
// loopback ports that were free. It then runs every workload for a fixed
// time, round after round, interleaving jeton's calls with the baselines
// they are judged against: a gRPC health check over the same connection,
// raw Redis SET and GET, Vault Transit encryption, and the tokenizer in
// process without gRPC. Ratios are taken within each round and the median
// over rounds is reported, because absolute speeds depend on the machine
// and on whatever else it is doing.
//
//	make bench                                   # the full run; adds it to BENCHMARKS.md
//	make bench BENCH_PROFILE=/tmp/jeton-prof     # also saves jetond CPU and alloc profiles
//	make bench BENCH_BEFORE=/tmp/jetond-main     # also runs the jeton workloads against that
//	                                             # binary, interleaved: a before/after table
//	go test ./integration/bench                  # a short smoke run that checks the harness
//
// It is a test rather than a main package because integration/testenv,
// which starts Redis and Vault, is built on testing.TB (temporary
// directories, cleanup of every process, a skip or, under CI=true, a
// failure when a server binary is missing), and because the smoke run then
// keeps the harness working in `make test`. Load goes to loopback only and
// every workload is bounded in time and in calls.
package bench
