//go:build linux

package handoff

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFillCheck(t *testing.T) {
	for _, size := range []int{0, 1, 7, 8, 9, 4095, 4096, 65536 + 3} {
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
