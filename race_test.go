//go:build linux && race

package sealbuf_test

// raceEnabled reports a -race build; truncate_atomic_test.go says false.
const raceEnabled = true
