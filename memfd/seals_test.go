//go:build linux

package memfd_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

func TestSealConstantsAreKernelBits(t *testing.T) {
	require.Equal(t, memfd.Seals(unix.F_SEAL_SEAL), memfd.SealSeal)
	require.Equal(t, memfd.Seals(unix.F_SEAL_SHRINK), memfd.SealShrink)
	require.Equal(t, memfd.Seals(unix.F_SEAL_GROW), memfd.SealGrow)
	require.Equal(t, memfd.Seals(unix.F_SEAL_WRITE), memfd.SealWrite)
	require.Equal(t, memfd.Seals(unix.F_SEAL_FUTURE_WRITE), memfd.SealFutureWrite)
	require.Equal(t, memfd.Seals(0x20), memfd.SealExec) // F_SEAL_EXEC
}

func TestSealShrinkGrow(t *testing.T) {
	m := create(t, "shrink-grow")
	_, err := m.WriteAt([]byte("0123456789"), 0)
	require.NoError(t, err)
	require.NoError(t, m.AddSeals(memfd.SealShrink|memfd.SealGrow))

	seals, err := m.Seals()
	require.NoError(t, err)
	require.True(t, seals.Has(memfd.SealShrink|memfd.SealGrow), "seals %v", seals)
	require.Equal(t, memfd.SealShrink|memfd.SealGrow|memfd.SealExec, seals)

	err = m.Truncate(5)
	require.ErrorIs(t, err, unix.EPERM, "truncate smaller")
	err = m.Truncate(20)
	require.ErrorIs(t, err, unix.EPERM, "truncate larger")
	require.NoError(t, m.Truncate(10), "same size is no change")

	// Writes that would grow the file fail; writes inside it work.
	n, err := m.WriteAt([]byte("ab"), 9)
	require.ErrorIs(t, err, unix.EPERM)
	require.LessOrEqual(t, n, 1)
	n, err = m.WriteAt([]byte("AB"), 0)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	size, err := m.Size()
	require.NoError(t, err)
	require.Equal(t, int64(10), size)
}

func TestSealWrite(t *testing.T) {
	m := create(t, "write")
	_, err := m.WriteAt([]byte("fixed"), 0)
	require.NoError(t, err)
	require.NoError(t, m.AddSeals(memfd.SealWrite))

	n, err := m.WriteAt([]byte("X"), 0)
	require.ErrorIs(t, err, unix.EPERM)
	require.Zero(t, n)
	b := make([]byte, 5)
	_, err = m.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "fixed", string(b))

	seals, err := m.Seals()
	require.NoError(t, err)
	require.True(t, seals.Has(memfd.SealWrite))
}

func TestSealFutureWrite(t *testing.T) {
	m := create(t, "future-write")
	_, err := m.WriteAt([]byte("fixed"), 0)
	require.NoError(t, err)
	require.NoError(t, m.AddSeals(memfd.SealFutureWrite))
	_, err = m.WriteAt([]byte("X"), 0)
	require.ErrorIs(t, err, unix.EPERM)
	seals, err := m.Seals()
	require.NoError(t, err)
	require.True(t, seals.Has(memfd.SealFutureWrite))
}

func TestSealSeal(t *testing.T) {
	m := create(t, "seal-seal")
	require.NoError(t, m.AddSeals(memfd.SealShrink))
	require.NoError(t, m.AddSeals(memfd.SealShrink), "adding a seal already set")
	require.NoError(t, m.AddSeals(memfd.SealSeal))

	err := m.AddSeals(memfd.SealGrow)
	require.ErrorIs(t, err, unix.EPERM)
	err = m.AddSeals(memfd.SealWrite)
	require.ErrorIs(t, err, unix.EPERM)

	seals, err := m.Seals()
	require.NoError(t, err)
	require.Equal(t, memfd.SealSeal|memfd.SealShrink|memfd.SealExec, seals)
	require.False(t, seals.Has(memfd.SealGrow))
}

func TestSealWriteBusyWhileMappedWritable(t *testing.T) {
	m := create(t, "busy")
	require.NoError(t, m.Truncate(4096))

	var mem []byte
	borrow(t, m, func(fd int) {
		var err error
		mem, err = unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		require.NoError(t, err)
	})
	mapped := true
	t.Cleanup(func() {
		if mapped {
			_ = unix.Munmap(mem)
		}
	})
	mem[0] = 'w'

	err := m.AddSeals(memfd.SealWrite)
	require.ErrorIs(t, err, unix.EBUSY)
	seals, err := m.Seals()
	require.NoError(t, err)
	require.False(t, seals.Has(memfd.SealWrite), "a refused seal must not be set")
	// Still writable.
	_, err = m.WriteAt([]byte("v"), 1)
	require.NoError(t, err)

	require.NoError(t, unix.Munmap(mem))
	mapped = false
	require.NoError(t, m.AddSeals(memfd.SealWrite))
	b := make([]byte, 2)
	_, err = m.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "wv", string(b))
	_, err = m.WriteAt([]byte("x"), 0)
	require.ErrorIs(t, err, unix.EPERM)
}

func TestSealsReadBackMatchesKernel(t *testing.T) {
	m := create(t, "readback")
	require.NoError(t, m.AddSeals(memfd.SealShrink|memfd.SealGrow|memfd.SealWrite|memfd.SealSeal))
	seals, err := m.Seals()
	require.NoError(t, err)
	var raw int
	borrow(t, m, func(fd int) {
		raw, err = unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		require.NoError(t, err)
	})
	require.Equal(t, memfd.Seals(raw), seals)
	require.True(t, seals.Has(memfd.SealImmutable))
	require.Equal(t, "seal|shrink|grow|write|exec", seals.String())
}

// ---- Seals values ----

func TestSealsString(t *testing.T) {
	all := memfd.SealSeal | memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealFutureWrite | memfd.SealExec
	for _, c := range []struct {
		s    memfd.Seals
		want string
	}{
		{0, "none"},
		{all, "seal|shrink|grow|write|future_write|exec"},
		{memfd.SealSeal, "seal"},
		{memfd.SealShrink, "shrink"},
		{memfd.SealGrow, "grow"},
		{memfd.SealWrite, "write"},
		{memfd.SealFutureWrite, "future_write"},
		{memfd.SealExec, "exec"},
		{memfd.SealExec | memfd.SealShrink, "shrink|exec"},
		{memfd.SealWrite | memfd.SealGrow | memfd.SealShrink, "shrink|grow|write"},
		{memfd.SealSeal | memfd.SealWrite, "seal|write"},
	} {
		require.Equal(t, c.want, c.s.String(), "%#x", uint32(c.s))
	}
}

func TestParseSeals(t *testing.T) {
	all := memfd.SealSeal | memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealFutureWrite | memfd.SealExec
	for _, c := range []struct {
		in   string
		want memfd.Seals
	}{
		{"none", 0},
		{"seal", memfd.SealSeal},
		{"shrink|grow", memfd.SealShrink | memfd.SealGrow},
		{"grow|shrink", memfd.SealShrink | memfd.SealGrow},
		{"write|grow|shrink", memfd.SealImmutable},
		{"exec|future_write|write|grow|shrink|seal", all},
		{"seal|shrink|grow|write|future_write|exec", all},
	} {
		got, err := memfd.ParseSeals(c.in)
		require.NoError(t, err, "%q", c.in)
		require.Equal(t, c.want, got, "%q", c.in)
	}

	for _, bad := range []string{
		"", "|", "shrink|", "|shrink", "shrink||grow",
		"bogus", "shrink|bogus", "Shrink", "SHRINK", "future-write", "futurewrite",
		"none|shrink", "shrink|none", "none|none", "none|",
		"shrink,grow", "0", "1",
	} {
		got, err := memfd.ParseSeals(bad)
		require.Error(t, err, "ParseSeals(%q) = %v", bad, got)
		require.Zero(t, got, "%q", bad)
	}
}

func TestParseSealsRoundTrip(t *testing.T) {
	for v := memfd.Seals(0); v < 1<<6; v++ {
		s := v.String()
		got, err := memfd.ParseSeals(s)
		require.NoError(t, err, "%q", s)
		require.Equal(t, v, got, "%q", s)
	}
}

func TestSealsHas(t *testing.T) {
	s := memfd.SealShrink | memfd.SealGrow
	require.True(t, s.Has(0))
	require.True(t, memfd.Seals(0).Has(0))
	require.True(t, s.Has(memfd.SealShrink))
	require.True(t, s.Has(memfd.SealShrink|memfd.SealGrow))
	require.False(t, s.Has(memfd.SealShrink|memfd.SealWrite), "partial is not Has")
	require.False(t, s.Has(memfd.SealWrite))
	require.False(t, memfd.Seals(0).Has(memfd.SealSeal))
	require.True(t, (s | memfd.SealWrite | memfd.SealExec).Has(memfd.SealImmutable))
	require.False(t, s.Has(memfd.SealImmutable))
}
