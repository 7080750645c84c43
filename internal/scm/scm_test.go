//go:build linux

package scm_test

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/scm"
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
		require.Equal(t, unix.CmsgSpace(4*n), scm.Space(n), "n=%d", n)
	}
	require.Equal(t, 253, scm.MaxFiles, "the kernel's SCM_MAX_FD")
}

func TestRightsRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 200, 252, 253} {
		fds := fdsN(n)
		oob := scm.AppendRights(nil, fds)
		require.Len(t, oob, scm.Space(n), "n=%d", n)
		require.Equal(t, unix.UnixRights(fds...), oob, "the same bytes as x/sys's UnixRights (n=%d)", n)
		got, err := scm.ParseRights(oob, nil)
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
	require.Empty(t, scm.AppendRights(nil, nil))
	buf := []byte("keep")
	require.Equal(t, []byte("keep"), scm.AppendRights(buf, []int{}), "no descriptors, no control message")
	got, err := scm.ParseRights(nil, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestAppendRightsAppends(t *testing.T) {
	oob := scm.AppendRights(nil, []int{1, 2, 3})
	oob = scm.AppendRights(oob, []int{4})
	require.Len(t, oob, scm.Space(3)+scm.Space(1))
	got, err := scm.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3, 4}, got, "two control messages, every descriptor in order")

	// Reusing a buffer: the old contents are overwritten, not added to.
	oob = scm.AppendRights(oob[:0], []int{9})
	got, err = scm.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{9}, got)
}

func TestParseRightsAppendsToFds(t *testing.T) {
	oob := scm.AppendRights(nil, []int{7, 8})
	got, err := scm.ParseRights(oob, []int{1})
	require.NoError(t, err)
	require.Equal(t, []int{1, 7, 8}, got)

	// With room in fds, parsing allocates nothing.
	buf := make([]int, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		buf, err = scm.ParseRights(oob, buf[:0])
	})
	require.NoError(t, err)
	require.Zero(t, allocs)
	oob = oob[:0]
	allocs = testing.AllocsPerRun(100, func() { oob = scm.AppendRights(oob[:0], []int{1, 2}) })
	require.Zero(t, allocs, "appending into a buffer with room allocates nothing")
}

// TestParseRightsUnpadded: the kernel may report a control length without
// the last message's padding (msg_controllen is cut to what was written).
func TestParseRightsUnpadded(t *testing.T) {
	oob := cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, unix.CmsgLen(4), rightsData(42), false)
	require.Len(t, oob, unix.CmsgLen(4))
	got, err := scm.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{42}, got)
}

// TestParseRightsNegative: descriptor numbers are int32 on the wire.
func TestParseRightsNegative(t *testing.T) {
	oob := cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, unix.CmsgLen(8), rightsData(-1, 5), true)
	got, err := scm.ParseRights(oob, nil)
	require.NoError(t, err)
	require.Equal(t, []int{-1, 5}, got)
}

func TestParseRightsMalformed(t *testing.T) {
	good := scm.AppendRights(nil, []int{10, 11})
	creds := cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, unix.CmsgLen(12), make([]byte, 12), true)
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
		{"credentials alone", creds, nil},
		{"rights then credentials", append(append([]byte{}, good...), creds...), []int{10, 11}},
		{"credentials then rights", append(append([]byte{}, creds...), good...), []int{10, 11}},
		{"rights then garbage", append(append([]byte{}, good...), 1, 2, 3), []int{10, 11}},
		{"rights then bad length", append(append([]byte{}, good...), cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, 4096, rightsData(14), true)...), []int{10, 11}},
		{"rights, bad rights, rights", append(append(append([]byte{}, good...), cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, unix.CmsgLen(5), rightsData(20, 21), true)...), scm.AppendRights(nil, []int{30})...), []int{10, 11, 20, 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := scm.ParseRights(tc.oob, nil)
			require.ErrorIs(t, err, scm.ErrMalformed, "%v", err)
			require.Equal(t, tc.fds, got, "every descriptor found must be returned, so it can be closed")
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
			oob = scm.AppendRights(nil, fdsN(1+rng.IntN(10)))
			oob[rng.IntN(len(oob))] ^= byte(1 + rng.UintN(255))
		default:
			oob = scm.AppendRights(nil, fdsN(1+rng.IntN(10)))
			oob = oob[:rng.IntN(len(oob)+1)]
		}
		got, err := scm.ParseRights(oob, nil)
		require.LessOrEqual(t, len(got), len(oob)/4, "more descriptors than bytes could hold")
		_ = err
	}
}
