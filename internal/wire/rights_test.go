//go:build linux

package wire_test

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/wire"
)

var hdrLen = unix.CmsgLen(0)

// fdsN returns n descriptor numbers that are easy to tell apart.
func fdsN(n int) []int {
	fds := make([]int, n)
	for i := range fds {
		fds[i] = 100 + 3*i
	}
	return fds
}

// cmsg builds one control message by hand: a header claiming length
// claimed, then data, padded to the next alignment boundary when pad is set.
func cmsg(level, typ int32, claimed int, data []byte, pad bool) []byte {
	n := hdrLen + len(data)
	if pad {
		n = unix.CmsgSpace(len(data))
	}
	b := make([]byte, n)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(claimed)
	copy(b[hdrLen:], data)
	return b
}

func rightsData(fds ...int) []byte {
	var b []byte
	for _, fd := range fds {
		b = binary.NativeEndian.AppendUint32(b, uint32(fd))
	}
	return b
}

func TestSpace(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 252, 253} {
		require.Equal(t, unix.CmsgSpace(4*n), wire.Space(n), "n=%d", n)
	}
	require.Equal(t, 253, wire.MaxFiles, "the kernel's SCM_MAX_FD")
}

func TestRightsRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 200, 252, 253} {
		fds := fdsN(n)
		oob := wire.AppendRights(nil, fds)
		require.Len(t, oob, wire.Space(n), "n=%d", n)
		require.Equal(t, unix.UnixRights(fds...), oob, "the same bytes as x/sys's UnixRights (n=%d)", n)
		got, err := wire.ParseRights(oob, nil)
		require.NoError(t, err, "n=%d", n)
		require.Equal(t, fds, got, "n=%d", n)

		// x/sys agrees on what the bytes mean.
		msgs, err := unix.ParseSocketControlMessage(oob)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		rights, err := unix.ParseUnixRights(&msgs[0])
		require.NoError(t, err)
		require.Len(t, rights, n)
	}
}

func TestAppendRightsNone(t *testing.T) {
	require.Empty(t, wire.AppendRights(nil, nil))
	buf := []byte("keep")
	require.Equal(t, []byte("keep"), wire.AppendRights(buf, []int{}), "no descriptors, no control message")
	got, err := wire.ParseRights(nil, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestAppendRightsAppends(t *testing.T) {
	oob := wire.AppendRights(nil, []int{1, 2, 3})
	oob = wire.AppendRights(oob, []int{4})
	require.Len(t, oob, wire.Space(3)+wire.Space(1))
	got, err := wire.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3, 4}, got, "two control messages, every descriptor in order")

	// Reusing a buffer: the old contents are overwritten, not added to.
	oob = wire.AppendRights(oob[:0], []int{9})
	got, err = wire.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{9}, got)
}

func TestParseRightsAppendsToFds(t *testing.T) {
	oob := wire.AppendRights(nil, []int{7, 8})
	got, err := wire.ParseRights(oob, []int{1})
	require.NoError(t, err)
	require.Equal(t, []int{1, 7, 8}, got)

	// With room in fds, parsing allocates nothing.
	buf := make([]int, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		buf, err = wire.ParseRights(oob, buf[:0])
	})
	require.NoError(t, err)
	require.Zero(t, allocs)
	oob = oob[:0]
	allocs = testing.AllocsPerRun(100, func() { oob = wire.AppendRights(oob[:0], []int{1, 2}) })
	require.Zero(t, allocs, "appending into a buffer with room allocates nothing")
}

// TestParseRightsUnpadded: the kernel may report a control length without
// the last message's padding (msg_controllen is cut to what was written).
func TestParseRightsUnpadded(t *testing.T) {
	oob := cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, unix.CmsgLen(4), rightsData(42), false)
	require.Len(t, oob, unix.CmsgLen(4))
	got, err := wire.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{42}, got)
}

// TestParseRightsNegative: descriptor numbers are int32 on the wire.
func TestParseRightsNegative(t *testing.T) {
	oob := cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, unix.CmsgLen(8), rightsData(-1, 5), true)
	got, err := wire.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{-1, 5}, got)
}

func TestParseRightsMalformed(t *testing.T) {
	good := wire.AppendRights(nil, []int{10, 11})
	for _, tc := range []struct {
		name string
		oob  []byte
		fds  []int // what must still be returned, for closing
	}{
		{"shorter than a header", make([]byte, hdrLen-1), nil},
		{"one byte", []byte{1}, nil},
		{"length past the end", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, 1000, rightsData(1), true), nil},
		{"length below the header", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, hdrLen-1, rightsData(1), true), nil},
		{"length zero", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, 0, rightsData(1), true), nil},
		{"rights not a multiple of 4", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, unix.CmsgLen(6), rightsData(12, 13), true), []int{12}},
		{"other level", cmsg(unix.SOL_IP, unix.SCM_RIGHTS, unix.CmsgLen(4), rightsData(1), true), nil},
		{"unknown type", cmsg(unix.SOL_SOCKET, 0x7f, unix.CmsgLen(4), rightsData(1), true), nil},
		{"rights then unknown type", append(append([]byte{}, good...), cmsg(unix.SOL_SOCKET, 0x7f, unix.CmsgLen(4), rightsData(1), true)...), []int{10, 11}},
		{"pidfd of 8 bytes", cmsg(unix.SOL_SOCKET, unix.SCM_PIDFD, unix.CmsgLen(8), rightsData(1, 2), true), nil},
		{"rights then garbage", append(append([]byte{}, good...), 1, 2, 3), []int{10, 11}},
		{"rights then bad length", append(append([]byte{}, good...), cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, 4096, rightsData(14), true)...), []int{10, 11}},
		{"rights, bad rights, rights", append(append(append([]byte{}, good...), cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, unix.CmsgLen(5), rightsData(20, 21), true)...), wire.AppendRights(nil, []int{30})...), []int{10, 11, 20, 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wire.ParseRights(tc.oob, nil)
			require.ErrorIs(t, err, wire.ErrMalformed, "%v", err)
			require.Equal(t, tc.fds, got, "every descriptor found must be returned, so it can be closed")
		})
	}
}

// TestParseControl: what the receiver's own socket options add is told
// apart from the peer's descriptors: an SCM_PIDFD's descriptor goes to
// other (the caller closes it), credentials carry none and are skipped.
func TestParseControl(t *testing.T) {
	good := wire.AppendRights(nil, []int{10, 11})
	creds := cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, unix.CmsgLen(12), make([]byte, 12), true)
	pidfd := cmsg(unix.SOL_SOCKET, unix.SCM_PIDFD, unix.CmsgLen(4), rightsData(77), true)
	for _, tc := range []struct {
		name          string
		oob           []byte
		rights, other []int
	}{
		{"credentials alone", creds, nil, nil},
		{"rights then credentials", append(append([]byte{}, good...), creds...), []int{10, 11}, nil},
		{"credentials then rights", append(append([]byte{}, creds...), good...), []int{10, 11}, nil},
		{"pidfd alone", pidfd, nil, []int{77}},
		{"rights then pidfd", append(append([]byte{}, good...), pidfd...), []int{10, 11}, []int{77}},
		{"pidfd then rights", append(append([]byte{}, pidfd...), good...), []int{10, 11}, []int{77}},
		{"pidfd, credentials, rights", append(append(append([]byte{}, pidfd...), creds...), good...), []int{10, 11}, []int{77}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rights, other, err := wire.ParseControl(tc.oob, nil, nil)
			require.NoError(t, err)
			require.Equal(t, tc.rights, rights)
			require.Equal(t, tc.other, other)
		})
	}
}

// TestParseRightsRandom feeds random and mutated control data: ParseRights
// never panics, never loops, and returns every descriptor of the well-formed
// messages before the first malformed one.
func TestParseRightsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		var oob []byte
		switch i % 3 {
		case 0:
			oob = make([]byte, rng.IntN(80))
			for j := range oob {
				oob[j] = byte(rng.UintN(256))
			}
		case 1:
			oob = wire.AppendRights(nil, fdsN(1+rng.IntN(10)))
			oob[rng.IntN(len(oob))] ^= byte(1 + rng.UintN(255))
		default:
			oob = wire.AppendRights(nil, fdsN(1+rng.IntN(10)))
			oob = oob[:rng.IntN(len(oob)+1)]
		}
		got, err := wire.ParseRights(oob, nil)
		require.LessOrEqual(t, len(got), len(oob)/4, "more descriptors than bytes could hold")
		_ = err
	}
}
