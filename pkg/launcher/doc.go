// Package launcher supervises glmctl's programs (the model server, the web
// UI): it spawns them, decides when they are ready, restarts them with
// capped backoff, stops them with their whole process tree, and captures
// their output.
//
// # States
//
// supervisord's states: STOPPED, STARTING, RUNNING, BACKOFF, STOPPING,
// EXITED, FATAL. A program is RUNNING only once ready: with a health probe,
// when the first probe passes within start_timeout (a refused connection
// meanwhile means "still loading"); without one, once it stayed alive for
// start_secs. While RUNNING, `failures` consecutive failed probes restart it.
//
// # Restarts
//
// restart = always restarts on any exit that was not asked for, exit 0
// included (vLLM can exit 0 when its engine dies); on-failure only on a
// non-zero exit or a signal; never leaves it EXITED. The n-th consecutive
// restart waits backoff.initial·2^(n-1), capped at backoff.max, minus up to
// 25% of jitter (zero backoff restarts at once). A run that stays RUNNING for
// max(60s, backoff.max) resets the sequence. A program that ends before it is
// ready is a failed start: start_retries of them within 60 s make it FATAL
// (0 behaves like 1); with restart = never (or on-failure and exit 0) it is
// EXITED instead. A missing executable, an unknown user or a bad directory is
// FATAL at once: retrying cannot fix it. Start from FATAL tries again. The
// pre-start hook runs before every start; its error counts as a failed start.
// A program whose backoff.initial is under 50ms keeps a spare keeper forked
// ahead of need, so a crash is followed by a restart within milliseconds.
// With Options.AwaitRelease set, a program with gpus has its process tree
// sampled while it runs (and when it is asked to stop); before its next
// start the hook gets those PIDs, to wait until they hold no GPU memory.
//
// # Running short of descriptors, memory or processes
//
// A spawn that fails because glmctl or the system ran short of file
// descriptors (EMFILE, ENFILE: a descriptor flood against the guard), memory
// (ENOMEM) or processes (EAGAIN from fork) — "start keeper: pipe2: too many
// open files" — is not a failed start: whatever its restart policy, the
// program goes to BACKOFF ("spawn failed: …; retrying in 2s") and is tried
// again with the usual capped backoff (never sooner than 1s), without
// counting towards start_retries, so it never goes FATAL for that. A health
// probe that cannot run for the same reasons ("socket: too many open files")
// is not a failed probe either: it counts nothing towards failures, never
// restarts a RUNNING program, and a start_timeout that passes meanwhile
// waits for the next probe that can run to decide; the status message says
// so, and the log says it once when probes stop running and once when they
// run again. When descriptors come back, everything recovers by itself. An
// EAGAIN from connect (a unix socket's full listen backlog: a server that
// stopped accepting) is still a failed probe.
//
// # Time
//
// The state machine's timers (start_secs, start_timeout, stop_timeout,
// backoff and the stable run that resets it) and the probe schedule run on
// Options.Clock, the wall clock unless a test passes one it advances itself.
//
// # Dependencies
//
// A program starts only once every program in its depends_on is RUNNING and
// healthy. Start starts the missing dependencies first (whatever their
// autostart), and fails if one of them fails. Run's autostart waits for
// dependencies as long as it takes, so a dependent follows a dependency that
// an operator recovers from FATAL. Stop and shutdown stop dependents before
// their dependencies; Stop of one program does not stop its dependents.
//
// # Process trees
//
// Every program runs under a keeper, a re-exec of the current executable
// (see RunKeeperIfRequested) started from a goroutine locked to its OS
// thread with a parent-death signal (it shows in ps as "glmctl keeper NAME").
// Where CLONE_NEWPID is allowed (root, or CAP_SYS_ADMIN), the keeper is PID 1
// of a new PID namespace, in a mount namespace of its own where it mounts a
// matching /proc (so /proc/<getpid()> is the program itself, as psutil
// expects; host mounts still propagate in): stop_signal reaches every
// process of the program (kill(-1) from PID 1, setsid escapees included);
// when the program's main process exits, the keeper SIGKILLs what is left;
// SIGKILL of the keeper, on stop_timeout or when glmctl itself dies (even by
// kill -9), makes the kernel kill the whole namespace at once. Where PID
// namespaces are refused, the keeper is a child subreaper that signals every
// descendant it finds in /proc (process group plus the parent chain, which
// setsid does not break) and SIGKILLs them all when the main process exits,
// when asked, or when glmctl dies (it learns that from its control pipe
// closing and from a parent-death SIGTERM). What that fallback cannot promise:
// if the keeper itself is SIGKILLed (by the OOM killer, or a kill -9 aimed at
// it), its descendants are re-parented to init and survive.
//
// # Output
//
// Each line of stdout and stderr goes to the program's log file (O_APPEND,
// 0600, directory 0700 when created, rotated at max_size into NAME.1 …
// NAME.keep), to the logger
// Named(program) with a level guessed from the line, and to an in-memory
// tail of the last 1000 lines (Tail, Follow). Lines over 16 KiB are split.
package launcher
