//go:build linux

package pool_test

import (
	"os"
	"testing"

	"github.com/sealbuf/sealbuf/internal/testutil"
)

var page = os.Getpagesize()

// TestMain runs a child role (child_test.go) when the test binary is run
// again as one, else the tests, checked for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }
