//go:build linux

package handoff

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestFillCheck(t *testing.T) {
	for _, size := range []int{0, 1, 7, 8, 9, 4095, 4096, 4097, 4100, 4104, 4105, 8192, 65536 + 3, chunk, chunk + 5, 3*chunk + block + 3, 2*chunk + 4} {
		p := make([]byte, size)
		Fill(p, 42)
		require.NoError(t, Check(p, 42), "size %d", size)
		if size == 0 {
			continue
		}
		require.Error(t, Check(p, 43), "size %d: another message's pattern must not pass", size)
		for _, at := range []int{0, size / 2, size - 1} {
			p[at] ^= 0x01
			err := Check(p, 42)
			require.ErrorContains(t, err, "byte ", "size %d", size)
			require.ErrorContains(t, err, "message 42", "size %d", size)
			p[at] ^= 0x01
		}
	}
}

func TestFillEveryByteChanges(t *testing.T) {
	a, b := make([]byte, 4096), make([]byte, 4096)
	Fill(a, 0)
	Fill(b, 1)
	for i := range a {
		require.NotEqual(t, a[i], b[i], "byte %d is the same in messages 0 and 1", i)
	}
}

func BenchmarkFill(b *testing.B) {
	p := make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		Fill(p, uint64(i))
	}
}

func BenchmarkCheck(b *testing.B) {
	p := make([]byte, 1<<20)
	Fill(p, 7)
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		if err := Check(p, 7); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemmove(b *testing.B) {
	p, q := make([]byte, 1<<20), make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		copy(p, q)
	}
}

// TestCheckBlockOffsets: a block copied from elsewhere in the message (a
// transport that reads from the wrong place) fails, though the bytes are
// the same message's.
func TestCheckBlockOffsets(t *testing.T) {
	p := make([]byte, 2*chunk+5*block+13)
	Fill(p, 9)
	require.NoError(t, Check(p, 9))
	q := append([]byte(nil), p...)
	copy(q[3*block:4*block], p[2*block:3*block])
	// The first word differs from its own from its second byte on.
	require.ErrorContains(t, Check(q, 9), "byte "+strconv.Itoa(3*block+1)+" ")
	// Every word is the definition's.
	for i := 0; i+8 <= len(p); i += 8 {
		require.Equal(t, want(9, i), binary.LittleEndian.Uint64(p[i:]), "word at %d", i)
	}
}

// BenchmarkFillCheck is the pool mode's work per message without the
// transport: fill and check 64 MiB of a shared memfd mapping, pinned or
// not as the caller runs it (taskset -c 1 go test -bench FillCheck).
func BenchmarkFillCheck(b *testing.B) {
	const size = 64 << 20
	fd, err := unix.MemfdCreate("fill-check", unix.MFD_CLOEXEC)
	require.NoError(b, err)
	defer unix.Close(fd)
	require.NoError(b, unix.Ftruncate(fd, size))
	p, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	require.NoError(b, err)
	defer unix.Munmap(p)
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		Fill(p, uint64(i))
		if err := Check(p, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
}
