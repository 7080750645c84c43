//go:build linux

package main

import (
	"fmt"
	"os"
	"testing"
)

// testChildEnv names the helper role a re-executed test binary plays (a
// process holding memfds, a process that exits at once…).
const testChildEnv = "SEALBUF_TEST_CHILD"

// testChildren maps test helper roles to their entry points; each returns the
// exit status. Test files add their roles from init.
var testChildren = map[string]func() int{}

func TestMain(m *testing.M) {
	if role := os.Getenv(testChildEnv); role != "" {
		fn, ok := testChildren[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "sealbuf test: unknown test child role %q\n", role)
			os.Exit(2)
		}
		os.Exit(fn())
	}
	// A command under test that re-executes os.Executable() — here the test
	// binary — as one of sealbuf's own child roles must play that role, as
	// main does, and never run the test suite again.
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}
