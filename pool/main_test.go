//go:build linux

package pool_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

var page = os.Getpagesize()

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
