//go:build linux

// Package bench holds sealbuf's benchmarks: the two-process handoff of one
// message against the raw x/sys/unix floor, an AF_UNIX socket copy and a
// /dev/shm file mapped with mmap-go, and micro-benchmarks of each step.
//
// It is a module of its own so that benchmark-only dependencies (mmap-go)
// stay out of the library's module graph. Run it from this directory:
//
//	go test -run=NONE -bench=. -benchtime=200ms ./... | tee new.txt
//	benchstat old.txt new.txt
//
// SEALBUF_BENCH_PIN=none runs producer and consumer unpinned (the default
// pins both to one CPU, like `sealbuf bench -pin same`).
package bench
