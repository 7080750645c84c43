//go:build linux

package handoff

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
)

// TestReserve: what FromBytes returns passes the library's Open (the
// consumer's check) and holds the message; Close closes what is left and
// refuses a second time.
func TestReserve(t *testing.T) {
	_, err := NewReserve(4096, 0)
	require.Error(t, err, "depth 0")

	r, err := NewReserve(8192, 2)
	require.NoError(t, err)
	require.Equal(t, 8192, r.Size())
	_, err = r.FromBytes(make([]byte, 100))
	require.Error(t, err, "a message of another size")
	buf := make([]byte, 8192)
	for k := range uint64(5) {
		Fill(buf, k)
		f, err := r.FromBytes(buf)
		require.NoError(t, err)
		s, err := sealbuf.Open(f)
		if err != nil {
			f.Close()
		}
		require.NoError(t, err)
		require.Equal(t, 8192, s.Len())
		require.NoError(t, Check(s.Bytes(), k))
		require.NoError(t, s.Close())
	}
	require.NoError(t, r.Close())
	require.ErrorIs(t, r.Close(), os.ErrClosed)
	_, err = r.FromBytes(buf)
	require.ErrorIs(t, err, os.ErrClosed)

	r, err = NewReserve(0, 1)
	require.NoError(t, err)
	f, err := r.FromBytes(nil)
	require.NoError(t, err)
	s, err := sealbuf.Open(f)
	require.NoError(t, err)
	require.Equal(t, 0, s.Len())
	s.Close()
	require.NoError(t, r.Close())
}
