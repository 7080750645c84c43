//go:build linux

package sealbuf_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/internal/wire"
)

// TestConnAllocations: in steady state Send allocates nothing (with or
// without buffers), a header-only message costs the receiver nothing
// either, and Receive of one buffer allocates only what it returns: the
// *Sealed, its *os.File (two objects) and *memfd.File, the memfd's name and
// the slice.
func TestConnAllocations(t *testing.T) {
	if testutil.Race {
		t.Skip("-race instruments allocations")
	}
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		s := connSealed(t, []byte("allocation-free"))
		out := []byte("hdr")

		// Send alone: the peer is a raw socket drained with recvmsg.
		a, raw := connRawPair(t, typ)
		rc, err := raw.SyscallConn()
		require.NoError(t, err)
		var peer int
		// Drained with raw calls, so that only Send's allocations count.
		//iosafety:allow fd-escape raw stays open until the test ends, so its number stays valid; borrowing per call would allocate
		require.NoError(t, rc.Control(func(fd uintptr) { peer = int(fd) }))
		buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4*4))
		var fds [4]int
		drain := func() {
			_, oobn, _, err := wire.Recvmsg(peer, buf, oob, 0)
			if err != nil {
				panic(err)
			}
			got, err := wire.ParseRights(oob[:oobn], fds[:0])
			if err != nil {
				panic(err)
			}
			for _, fd := range got {
				unix.Close(fd)
			}
		}
		for _, with := range []bool{false, true} {
			allocs := testing.AllocsPerRun(200, func() {
				var err error
				if with {
					err = a.Send(out, s)
				} else {
					err = a.Send(out)
				}
				if err != nil {
					panic(err)
				}
				drain()
			})
			require.Zero(t, allocs, "Send (with a buffer: %v)", with)
		}

		// Round trips through two Conns.
		c, d := pair(t, typ)
		hdr := make([]byte, 16)
		allocs := testing.AllocsPerRun(200, func() {
			if err := c.Send(out); err != nil {
				panic(err)
			}
			if _, _, err := d.Receive(hdr); err != nil {
				panic(err)
			}
		})
		require.Zero(t, allocs, "header-only Send+Receive")
		allocs = testing.AllocsPerRun(200, func() {
			if err := c.Send(out, s); err != nil {
				panic(err)
			}
			_, bufs, err := d.Receive(hdr)
			if err != nil {
				panic(err)
			}
			bufs[0].Close()
		})
		require.LessOrEqual(t, allocs, 6.0, "Send+Receive of one buffer")
	})
}
