//go:build linux

package sealtest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/sealbuf/sealbuf/sealtest"
)

func TestMain(m *testing.M) {
	sealtest.RunPeer()
	goleak.VerifyTestMain(m)
}
