//go:build linux

package nomain

import (
	"testing"

	"github.com/sealbuf/sealbuf/sealtest"
)

// No TestMain calling sealtest.Main or sealtest.RunPeer: the mistake under
// test.

func TestStartPeer(t *testing.T) {
	p, err := sealtest.StartPeer(nil)
	if err == nil {
		p.Close()
		t.Fatal("StartPeer succeeded in a test binary without sealtest.Main")
	}
	t.Log(err)
}
