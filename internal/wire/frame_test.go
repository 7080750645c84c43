//go:build linux

package wire_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf/internal/wire"
)

func TestFrameWireFormat(t *testing.T) {
	require.Equal(t, 8, wire.FrameLen)
	b := wire.Frame{HeaderLen: 0x01020304, Files: 0x00fd}.Append(nil)
	require.Equal(t, []byte{0x04, 0x03, 0x02, 0x01, 0xfd, 0x00, 'S', 'B'}, b,
		"header length as little-endian uint32, descriptor count as little-endian uint16, then 'S' 'B'")
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []wire.Frame{
		{},
		{HeaderLen: 1},
		{Files: 1},
		{HeaderLen: 70000, Files: 200},
		{HeaderLen: wire.MaxHeader, Files: wire.MaxFiles},
	} {
		b := f.Append(nil)
		require.Len(t, b, wire.FrameLen)
		got, err := wire.ParseFrame(b)
		require.NoError(t, err, "%+v", f)
		require.Equal(t, f, got)
	}
}

func TestFrameAppends(t *testing.T) {
	b := wire.Frame{HeaderLen: 5, Files: 2}.Append([]byte("prefix"))
	require.Equal(t, "prefix", string(b[:6]))
	got, err := wire.ParseFrame(b[6:])
	require.NoError(t, err)
	require.Equal(t, wire.Frame{HeaderLen: 5, Files: 2}, got)

	buf := make([]byte, 0, wire.FrameLen)
	allocs := testing.AllocsPerRun(100, func() { buf = wire.Frame{HeaderLen: 1}.Append(buf[:0]) })
	require.Zero(t, allocs)
}

// TestParseFrameIgnoresTrailing: only the first FrameLen bytes are the prefix.
func TestParseFrameIgnoresTrailing(t *testing.T) {
	b := append(wire.Frame{HeaderLen: 3, Files: 1}.Append(nil), "abc"...)
	got, err := wire.ParseFrame(b)
	require.NoError(t, err)
	require.Equal(t, wire.Frame{HeaderLen: 3, Files: 1}, got)
}

func TestParseFrameRefuses(t *testing.T) {
	valid := wire.Frame{HeaderLen: 3, Files: 1}.Append(nil)
	withMagic := func(m0, m1 byte) []byte {
		b := append([]byte{}, valid...)
		b[6], b[7] = m0, m1
		return b
	}
	cases := map[string][]byte{
		"empty":                  nil,
		"header over MaxHeader":  wire.Frame{HeaderLen: wire.MaxHeader + 1}.Append(nil),
		"header of 4 GiB-1":      {0xff, 0xff, 0xff, 0xff, 0, 0, 'S', 'B'},
		"files over MaxFiles":    wire.Frame{Files: wire.MaxFiles + 1}.Append(nil),
		"files 65535":            {0, 0, 0, 0, 0xff, 0xff, 'S', 'B'},
		"bad magic":              withMagic('X', 'Y'),
		"magic swapped":          withMagic('B', 'S'),
		"magic lowercase":        withMagic('s', 'b'),
		"zero magic":             withMagic(0, 0),
		"all zeros (no framing)": make([]byte, 8),
	}
	for n := 1; n < wire.FrameLen; n++ {
		cases["short "+string(rune('0'+n))] = valid[:n]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := wire.ParseFrame(b)
			require.ErrorIs(t, err, wire.ErrMalformed, "%v", err)
			require.Zero(t, f)
		})
	}
}
