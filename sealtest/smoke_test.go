//go:build linux

package sealtest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/sealtest"
)

func TestSmoke(t *testing.T) {
	sealtest.CheckLeaks(t)
	for _, network := range []string{"unixpacket", "unix"} {
		p, c := sealtest.Start(t, network)
		conn := sealbuf.NewConn(c)
		require.NoError(t, p.Send([]byte("hi"), sealtest.Sealed(10), sealtest.Unsealed(5)))
		_, _, err := conn.Receive(make([]byte, 10))
		require.ErrorIs(t, err, sealbuf.ErrNotSealed)
		t.Log(err, p.Pid())
	}
}
