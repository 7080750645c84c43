//go:build linux

package sigbus_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf/sigbus"
)

// requireFault checks that err is a *FaultError for m and returns it.
func requireFault(t *testing.T, m []byte, err error) *sigbus.FaultError {
	t.Helper()
	require.ErrorIs(t, err, sigbus.ErrFault)
	var fe *sigbus.FaultError
	require.ErrorAs(t, err, &fe)
	require.GreaterOrEqual(t, fe.Offset, int64(0))
	require.Less(t, fe.Offset, int64(len(m)))
	require.Equal(t, base(m)+uintptr(fe.Offset), fe.Addr, "Addr and Offset disagree")
	return fe
}

// TestGuardFaultKinds truncates the file behind a mapping and checks that
// every kind of access past the new end — Go code and the assembly routines
// behind copy, bytes, hashes and string conversion — becomes a *FaultError,
// and that the same access faults again on a second call.
func TestGuardFaultKinds(t *testing.T) {
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	cases := []struct {
		name   string
		access func(m []byte)
		exact  int // the offset Addr must have, or -1 when only the page is known
	}{
		{"index-read", func(m []byte) { sinkByte = m[page+904] }, page + 904},
		{"index-store", func(m []byte) { m[page+904] = 1 }, page + 904},
		{"range-loop", func(m []byte) {
			s := 0
			for _, b := range m {
				s += int(b)
			}
			sinkInt = s
		}, page},
		{"copy-whole", func(m []byte) { copy(make([]byte, len(m)), m) }, -1},
		{"copy-unaligned-dst", func(m []byte) { copy(make([]byte, len(m)+1)[1:], m) }, -1},
		{"copy-into-mapping", func(m []byte) { copy(m[page:], make([]byte, 64)) }, -1},
		{"clear", func(m []byte) { clear(m[page:]) }, -1},
		{"bytes.Equal", func(m []byte) {
			other := make([]byte, len(m))
			fillHead(other, page)
			sinkBool = bytes.Equal(m, other)
		}, -1},
		{"bytes.IndexByte", func(m []byte) { sinkInt = bytes.IndexByte(m, 0xff) }, -1},
		{"bytes.Count", func(m []byte) { sinkInt = bytes.Count(m, []byte{0xff}) }, -1},
		{"crc32.ChecksumIEEE", func(m []byte) { sinkUint32 = crc32.ChecksumIEEE(m) }, -1},
		{"crc32.Castagnoli", func(m []byte) { sinkUint32 = crc32.Checksum(m, castagnoli) }, -1},
		{"sha256.Sum256", func(m []byte) { sinkSum = sha256.Sum256(m) }, -1},
		{"string", func(m []byte) { sinkString = string(m) }, -1},
		{"LittleEndian.Uint64-past-end", func(m []byte) { sinkUint64 = binary.LittleEndian.Uint64(m[page+16:]) }, page + 16},
		{"LittleEndian.Uint64-straddling", func(m []byte) { sinkUint64 = binary.LittleEndian.Uint64(m[page-4:]) }, -1},
		{"LittleEndian.PutUint64", func(m []byte) { binary.LittleEndian.PutUint64(m[page+8:], 1) }, page + 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, m := truncatedMapping(t)

			err := sigbus.Guard(m, func() { tc.access(m) })
			fe := requireFault(t, m, err)
			// The fault address lies in a page past the end, though not
			// always the first byte that failed.
			require.GreaterOrEqual(t, fe.Offset, int64(page))
			if tc.exact >= 0 {
				require.Equal(t, int64(tc.exact), fe.Offset)
			}

			// Guard leaves the mapping alone: the same access faults again.
			again := requireFault(t, m, sigbus.Guard(m, func() { tc.access(m) }))
			require.Equal(t, fe.Offset, again.Offset)
		})
	}
}

func TestGuardReturnsNilWithoutFault(t *testing.T) {
	_, m := truncatedMapping(t)
	var got []byte
	require.NoError(t, sigbus.Guard(m, func() { got = append(got, m[:page]...) }))
	for i, b := range got {
		require.Equal(t, pattern(i), b, "offset %d", i)
	}
	require.NoError(t, sigbus.Guard(nil, func() {}))
}

func TestFaultErrorMessage(t *testing.T) {
	_, m := truncatedMapping(t)
	err := sigbus.Guard(m, func() { sinkByte = m[page+3] })
	requireFault(t, m, err)
	require.Contains(t, err.Error(), "offset "+strconv.Itoa(page+3))
	require.Contains(t, err.Error(), "truncated")
	require.NotErrorIs(t, err, errors.New(sigbus.ErrFault.Error()))

	fe := &sigbus.FaultError{Addr: 0x1000, Offset: 7}
	require.ErrorIs(t, fe, sigbus.ErrFault)
	require.Contains(t, fe.Error(), "offset 7")
}

// TestGuardDoesNotModifyMapping checks that after a fault the mapping is still
// the shared mapping of the file: growing the file back makes the tail
// readable again, and writes travel both ways.
func TestGuardDoesNotModifyMapping(t *testing.T) {
	f, m := truncatedMapping(t)
	requireFault(t, m, sigbus.Guard(m, func() { copy(make([]byte, len(m)), m) }))

	require.NoError(t, f.Truncate(mapSize))
	_, err := f.WriteAt([]byte{0xab}, int64(page+100))
	require.NoError(t, err)

	var head []byte
	var tail byte
	require.NoError(t, sigbus.Guard(m, func() {
		head = append(head, m[:page]...)
		tail = m[page+100]
		m[2*page] = 0xcd
	}))
	require.Equal(t, byte(0xab), tail, "the file's write is not visible: the mapping was replaced")
	for i, b := range head {
		require.Equal(t, pattern(i), b, "offset %d", i)
	}
	buf := make([]byte, 1)
	_, err = f.ReadAt(buf, int64(2*page))
	require.NoError(t, err)
	require.Equal(t, byte(0xcd), buf[0], "the mapping's write did not reach the file")
}

// TestGuardRepanicsFaultOutsideMem checks that faults at addresses outside
// the guarded slice are not converted: they are bugs, not truncations.
func TestGuardRepanicsFaultOutsideMem(t *testing.T) {
	_, m := truncatedMapping(t)
	_, other := truncatedMapping(t)

	cases := []struct {
		name  string
		mem   []byte
		probe []byte // the access reads probe[0], a byte past the end of its file
	}{
		{"head-of-same-mapping", m[:page], m[page+10:]},
		{"byte-before-mem", m[page+11:], m[page+10:]},
		{"another-mapping", other, m[page+10:]},
		{"empty-mem-at-fault-address", m[page+10 : page+10], m[page+10:]},
		{"nil-mem", nil, m[page+10:]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			r := catch(func() {
				err = sigbus.Guard(tc.mem, func() { sinkByte = tc.probe[0] })
			})
			require.NoError(t, err)
			require.NotNil(t, r, "Guard swallowed a fault outside mem")
			fault, ok := r.(interface{ Addr() uintptr })
			require.True(t, ok, "re-panicked value %T has no Addr", r)
			require.Equal(t, base(tc.probe), fault.Addr())
			require.Implements(t, (*runtime.Error)(nil), r)
		})
	}
}

type customPanic struct{ msg string }

func (c *customPanic) Error() string { return c.msg }

func TestGuardRepanicsOtherPanics(t *testing.T) {
	_, m := truncatedMapping(t)

	t.Run("string", func(t *testing.T) {
		r := catch(func() { _ = sigbus.Guard(m, func() { panic("x") }) })
		require.Equal(t, "x", r)
	})
	t.Run("error-pointer", func(t *testing.T) {
		want := &customPanic{"boom"}
		r := catch(func() { _ = sigbus.Guard(m, func() { panic(want) }) })
		require.Same(t, want, r)
	})
	t.Run("nil-pointer-dereference", func(t *testing.T) {
		var p *int
		r := catch(func() { _ = sigbus.Guard(m, func() { sinkInt = *p }) })
		require.NotNil(t, r)
		re, ok := r.(runtime.Error)
		require.True(t, ok, "%T is not a runtime.Error", r)
		require.Contains(t, re.Error(), "nil pointer dereference")
		_, hasAddr := r.(interface{ Addr() uintptr })
		require.False(t, hasAddr)
	})
	t.Run("index-out-of-range", func(t *testing.T) {
		i := len(m)
		r := catch(func() { _ = sigbus.Guard(m, func() { sinkByte = m[i] }) })
		re, ok := r.(runtime.Error)
		require.True(t, ok, "%T is not a runtime.Error", r)
		require.Contains(t, re.Error(), "index out of range")
	})
}

// TestGuardNested checks that each guard claims only faults in its own slice.
func TestGuardNested(t *testing.T) {
	_, a := truncatedMapping(t)
	_, b := truncatedMapping(t)

	var inner error
	outer := sigbus.Guard(a, func() {
		inner = sigbus.Guard(b, func() { sinkByte = a[page+1] })
		t.Error("inner Guard returned after a fault outside its slice")
	})
	require.NoError(t, inner)
	require.Equal(t, int64(page+1), requireFault(t, a, outer).Offset)

	outer = sigbus.Guard(a, func() {
		inner = sigbus.Guard(b, func() { sinkByte = b[page+2] })
	})
	require.NoError(t, outer)
	require.Equal(t, int64(page+2), requireFault(t, b, inner).Offset)
}

// TestGuardRestoresPanicOnFault checks that Guard turns the setting on for
// fn and restores the previous one, true or false, on every path.
func TestGuardRestoresPanicOnFault(t *testing.T) {
	_, m := truncatedMapping(t)
	_, other := truncatedMapping(t)
	var nilp *int
	paths := []struct {
		name string
		fn   func()
	}{
		{"return", func() { sinkByte = m[0] }},
		{"fault", func() { sinkByte = m[page] }},
		{"panic", func() { panic("x") }},
		{"fault-outside-mem", func() { sinkByte = other[page] }},
		{"nil-dereference", func() { sinkInt = *nilp }},
	}
	for _, prior := range []bool{false, true} {
		for _, p := range paths {
			t.Run(p.name+"/prior="+strconv.FormatBool(prior), func(t *testing.T) {
				orig := debug.SetPanicOnFault(prior)
				defer debug.SetPanicOnFault(orig)

				var inside bool
				catch(func() {
					_ = sigbus.Guard(m, func() {
						inside = debug.SetPanicOnFault(true)
						p.fn()
					})
				})
				after := debug.SetPanicOnFault(prior)
				require.True(t, inside, "SetPanicOnFault was off inside fn")
				require.Equal(t, prior, after, "previous setting not restored")
			})
		}
		t.Run("goexit/prior="+strconv.FormatBool(prior), func(t *testing.T) {
			done := make(chan bool)
			go func() {
				debug.SetPanicOnFault(prior)
				defer func() { done <- debug.SetPanicOnFault(prior) }()
				_ = sigbus.Guard(m, runtime.Goexit)
				t.Error("Guard returned after runtime.Goexit")
			}()
			require.Equal(t, prior, <-done, "previous setting not restored")
		})
	}
}
