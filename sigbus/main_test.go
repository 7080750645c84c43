//go:build linux

package sigbus_test

import (
	"fmt"
	"os"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/testutil"
)

// mapSize is the size every test mapping is created with; the file behind it
// is then cut to page bytes, so [page, mapSize) faults with SIGBUS.
const mapSize = 1 << 20

var page = os.Getpagesize()

// Sinks keep the compiler from dropping the accesses under test.
var (
	sinkByte   byte
	sinkBool   bool
	sinkInt    int
	sinkUint32 uint32
	sinkUint64 uint64
	sinkString string
	sinkSum    [32]byte
)

func TestMain(m *testing.M) {
	testutil.RunRole() // process_test.go's children
	os.Exit(m.Run())
}

// newMemfd returns a close-on-exec memfd of the given size, closed at cleanup.
func newMemfd(tb testing.TB, size int64) *os.File {
	tb.Helper()
	fd, err := unix.MemfdCreate("sigbus-test", unix.MFD_CLOEXEC)
	require.NoError(tb, err)
	f := os.NewFile(uintptr(fd), "memfd:sigbus-test")
	tb.Cleanup(func() { require.NoError(tb, f.Close()) })
	require.NoError(tb, f.Truncate(size))
	return f
}

// mapShared maps the first size bytes of f read-write and shared, unmapped at
// cleanup.
func mapShared(tb testing.TB, f *os.File, size int) []byte {
	tb.Helper()
	rc, err := f.SyscallConn()
	require.NoError(tb, err)
	var (
		ptr  unsafe.Pointer
		merr error
	)
	require.NoError(tb, rc.Control(func(fd uintptr) {
		ptr, merr = unix.MmapPtr(int(fd), 0, nil, uintptr(size),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}))
	require.NoError(tb, merr)
	tb.Cleanup(func() { require.NoError(tb, unix.MunmapPtr(ptr, uintptr(size))) })
	return unsafe.Slice((*byte)(ptr), size)
}

// pattern is the byte the tests store at offset i of the head of a mapping.
// It is never 0xff, so bytes.IndexByte(m, 0xff) scans the whole mapping.
func pattern(i int) byte { return byte(i % 251) }

// fillHead writes pattern into the first n bytes of m.
func fillHead(m []byte, n int) {
	for i := range m[:n] {
		m[i] = pattern(i)
	}
}

// truncatedMapping returns a mapSize-byte shared mapping of a memfd whose
// first page holds pattern and which was then cut to one page, so every
// access at or past page raises SIGBUS.
func truncatedMapping(tb testing.TB) (*os.File, []byte) {
	tb.Helper()
	f := newMemfd(tb, mapSize)
	m := mapShared(tb, f, mapSize)
	fillHead(m, page)
	require.NoError(tb, f.Truncate(int64(page)))
	return f, m
}

// base returns the address of m's first byte.
func base(m []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(m))) }

// catch runs f and returns the value it panicked with, or nil.
func catch(f func()) (r any) {
	defer func() { r = recover() }()
	f()
	return nil
}

// errorf is fmt.Errorf for goroutines that must not call require.
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
