//go:build linux && !race

package testutil

// Race reports a -race build (allocation counts and some access kinds do
// not hold under it).
const Race = false
