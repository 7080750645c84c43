//go:build linux

package sealbuf_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/stretchr/testify/require"
)

// osFile returns a dup of the memfd as an *os.File for Open/Map.
func reopen(t *testing.T, f *memfd.File) *os.File {
	t.Helper()
	var out *os.File
	require.NoError(t, f.Control(func(fd int) error {
		var err error
		out, err = os.OpenFile("/proc/self/fd/"+itoa(fd), os.O_RDWR, 0)
		return err
	}))
	return out
}

func itoa(i int) string { return string(appendInt(nil, i)) }
func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

func TestSmokeSealOpen(t *testing.T) {
	b, err := sealbuf.New(10000)
	require.NoError(t, err)
	copy(b.Bytes(), "hello")
	s, err := b.Seal()
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, b.Close())
	require.True(t, s.Seals().Has(memfd.SealImmutable|memfd.SealSeal), s.Seals().String())
	o, err := sealbuf.Open(reopen(t, s.File()))
	require.NoError(t, err)
	defer o.Close()
	require.Equal(t, "hello", string(o.Bytes()[:5]))
	p := make([]byte, 10)
	n, err := o.ReadAt(p, 9995)
	require.Equal(t, 5, n)
	require.ErrorIs(t, err, io.EOF)
}

func TestSmokeMapTruncate(t *testing.T) {
	f, err := memfd.Create("victim")
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(1<<20))
	m, err := sealbuf.Map(reopen(t, f))
	require.NoError(t, err)
	defer m.Close()
	p := make([]byte, 1<<20)
	_, err = m.ReadAt(p, 0)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(4000))
	for i := 0; i < 3; i++ {
		n, err := m.ReadAt(p, 0)
		require.ErrorIs(t, err, sealbuf.ErrTruncated, "%v", err)
		require.Zero(t, n)
		t.Log(err)
	}
	n, err := m.ReadAt(p[:4000], 0)
	require.NoError(t, err)
	require.Equal(t, 4000, n)
	_, err = m.ReadAt(p[:100], 3950)
	require.ErrorIs(t, err, sealbuf.ErrTruncated)
	err = m.Access(func(b []byte) error { _ = sha256.Sum256(b); return nil })
	require.ErrorIs(t, err, sealbuf.ErrTruncated)
	// grow back: heal
	require.NoError(t, f.Truncate(1<<20))
	_, err = f.WriteAt([]byte("xyz"), 500000)
	require.NoError(t, err)
	n, err = m.ReadAt(p[:3], 500000)
	require.NoError(t, err)
	require.Equal(t, "xyz", string(p[:n]))
	require.NoError(t, m.Access(func(b []byte) error {
		if !bytes.Equal(b[500000:500003], []byte("xyz")) {
			return errors.New("bad")
		}
		return nil
	}))
}
