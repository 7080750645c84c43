//go:build linux

package sigbus_test

// Contract tests for package sigbus, written from DESIGN.md "Public
// contract" only.

import (
	"errors"
	"runtime"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/sigbus"
)

var (
	_ func([]byte, func()) error = sigbus.Guard
	_ error                      = (*sigbus.FaultError)(nil)
	_ error                      = sigbus.ErrFault
	_                            = sigbus.FaultError{Addr: uintptr(0), Offset: int64(0)}
)

var ctSink byte

// ctTruncatedMapping returns a 4-page shared mapping of a memfd cut to one
// page: [page, 4*page) faults with SIGBUS.
func ctTruncatedMapping(t *testing.T) []byte {
	t.Helper()
	pg := unix.Getpagesize()
	fd, err := unix.MemfdCreate("contract-sigbus", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Ftruncate(fd, int64(4*pg)))
	mem, err := unix.Mmap(fd, 0, 4*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	for i := range pg {
		mem[i] = 0x5a
	}
	require.NoError(t, unix.Ftruncate(fd, int64(pg)))
	return mem
}

func ctBase(mem []byte) uintptr { return uintptr(unsafe.Pointer(&mem[0])) }

func TestContract_GuardNoFault(t *testing.T) {
	mem := ctTruncatedMapping(t)
	ran := false
	err := sigbus.Guard(mem, func() { ctSink = mem[0]; ran = true })
	require.NoError(t, err)
	require.True(t, ran)
	require.Equal(t, byte(0x5a), ctSink)
}

func TestContract_GuardFaultInside(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	off := 2*pg + 123
	err := sigbus.Guard(mem, func() { ctSink = mem[off] })
	require.Error(t, err)
	var fe *sigbus.FaultError
	require.True(t, errors.As(err, &fe), "want *FaultError, got %T %v", err, err)
	_, direct := err.(*sigbus.FaultError)
	require.True(t, direct, "*FaultError is the error: got %T", err)
	require.ErrorIs(t, err, sigbus.ErrFault)
	require.Equal(t, int64(fe.Addr-ctBase(mem)), fe.Offset, "Offset = Addr − &mem[0]")
	require.GreaterOrEqual(t, fe.Offset, int64(2*pg))
	require.Less(t, fe.Offset, int64(3*pg))
	require.NotEmpty(t, err.Error())
}

func TestContract_GuardFaultInsideWrite(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	err := sigbus.Guard(mem, func() { mem[3*pg+1] = 7 })
	var fe *sigbus.FaultError
	require.True(t, errors.As(err, &fe), "%v", err)
	require.Equal(t, int64(fe.Addr-ctBase(mem)), fe.Offset)
	require.GreaterOrEqual(t, fe.Offset, int64(3*pg))
}

func TestContract_GuardSubsliceOffset(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	sub := mem[2*pg : 3*pg]
	err := sigbus.Guard(sub, func() { ctSink = sub[10] })
	var fe *sigbus.FaultError
	require.True(t, errors.As(err, &fe), "%v", err)
	require.Equal(t, int64(fe.Addr-ctBase(sub)), fe.Offset)
	require.GreaterOrEqual(t, fe.Offset, int64(0))
	require.Less(t, fe.Offset, int64(pg))
}

func ctCatch(fn func()) (v any, panicked bool) {
	defer func() {
		if r := recover(); r != nil || panicked {
			v = r
			panicked = true
		}
	}()
	panicked = true
	fn()
	panicked = false
	return nil, false
}

func TestContract_GuardFaultOutsidePropagates(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	guarded := mem[:2*pg] // valid page + one faulting page
	v, panicked := ctCatch(func() {
		_ = sigbus.Guard(guarded, func() { ctSink = mem[3*pg+5] })
	})
	require.True(t, panicked, "a fault outside mem must propagate")
	ae, ok := v.(interface{ Addr() uintptr })
	require.True(t, ok, "the runtime's fault panic value propagates unchanged, got %T %v", v, v)
	require.Equal(t, ctBase(mem)+uintptr(3*pg+5), ae.Addr())
	_, isFE := v.(*sigbus.FaultError)
	require.False(t, isFE)
}

func TestContract_GuardFaultEmptyMemPropagates(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	for _, g := range [][]byte{nil, mem[2*pg : 2*pg]} {
		_, panicked := ctCatch(func() {
			_ = sigbus.Guard(g, func() { ctSink = mem[2*pg] })
		})
		require.True(t, panicked, "nothing is inside an empty mem")
	}
}

type ctPanicValue struct{ s string }

func TestContract_GuardOtherPanicsPropagateUnchanged(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pv := &ctPanicValue{"mine"}
	v, panicked := ctCatch(func() { _ = sigbus.Guard(mem, func() { panic(pv) }) })
	require.True(t, panicked)
	require.Same(t, pv, v)

	sentinel := errors.New("boom")
	v, panicked = ctCatch(func() { _ = sigbus.Guard(mem, func() { panic(sentinel) }) })
	require.True(t, panicked)
	require.Equal(t, sentinel, v)

	v, panicked = ctCatch(func() {
		_ = sigbus.Guard(mem, func() {
			var p *int
			_ = *p
		})
	})
	require.True(t, panicked, "a nil dereference is no fault inside mem")
	_, isErr := v.(error)
	require.True(t, isErr)
}

func TestContract_GuardRestoresSetPanicOnFault(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	orig := debug.SetPanicOnFault(false)
	defer debug.SetPanicOnFault(orig)

	paths := map[string]func(){
		"normal":       func() { _ = sigbus.Guard(mem, func() { ctSink = mem[0] }) },
		"fault-inside": func() { _ = sigbus.Guard(mem, func() { ctSink = mem[2*pg] }) },
		"fault-outside": func() {
			_, _ = ctCatch(func() { _ = sigbus.Guard(mem[:pg], func() { ctSink = mem[2*pg] }) })
		},
		"panic": func() { _, _ = ctCatch(func() { _ = sigbus.Guard(mem, func() { panic("x") }) }) },
	}
	for name, p := range paths {
		for _, prev := range []bool{false, true} {
			debug.SetPanicOnFault(prev)
			p()
			got := debug.SetPanicOnFault(false)
			require.Equal(t, prev, got, "%s: previous SetPanicOnFault(%v) not restored", name, prev)
		}
	}
	// Inside fn, it is on.
	debug.SetPanicOnFault(false)
	var inside bool
	_ = sigbus.Guard(mem, func() {
		inside = debug.SetPanicOnFault(true)
	})
	require.True(t, inside, "fn runs with SetPanicOnFault on")
	require.False(t, debug.SetPanicOnFault(false))
}

func TestContract_GuardNeverModifiesMem(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	for range 3 {
		err := sigbus.Guard(mem, func() { ctSink = mem[2*pg+1] })
		require.ErrorIs(t, err, sigbus.ErrFault, "the same access faults again")
	}
	require.Equal(t, byte(0x5a), mem[0])
}

func TestContract_FaultErrorIs(t *testing.T) {
	var err error = &sigbus.FaultError{Addr: 100, Offset: 4}
	require.ErrorIs(t, err, sigbus.ErrFault)
	require.NotEmpty(t, err.Error())
}

// ctAddrPanic is an ordinary panic value that happens to have an Addr
// method: it is no memory fault, so it must propagate unchanged.
type ctAddrPanic struct{ addr uintptr }

func (p ctAddrPanic) Addr() uintptr { return p.addr }

func TestContract_GuardNonFaultPanicWithAddrPropagates(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pv := ctAddrPanic{addr: ctBase(mem) + 10}
	var err error
	v, panicked := ctCatch(func() {
		err = sigbus.Guard(mem, func() { panic(pv) })
	})
	require.True(t, panicked, "an ordinary panic (not a fault) must propagate, got err %v", err)
	require.Equal(t, pv, v)
}

func TestContract_GuardNested(t *testing.T) {
	mem := ctTruncatedMapping(t)
	pg := unix.Getpagesize()
	outer, inner := mem[:2*pg], mem[2*pg:]
	var innerPanicked bool
	err := sigbus.Guard(outer, func() {
		_, innerPanicked = ctCatch(func() {
			_ = sigbus.Guard(inner, func() { ctSink = outer[pg+3] })
		})
		if innerPanicked {
			// Re-raise by faulting again inside outer.
			ctSink = outer[pg+3]
		}
	})
	require.True(t, innerPanicked, "a fault outside the inner mem propagates out of the inner Guard")
	var fe *sigbus.FaultError
	require.True(t, errors.As(err, &fe), "%v", err)
	require.Equal(t, int64(fe.Addr-ctBase(outer)), fe.Offset)
}

func TestContract_GuardGoexitRestores(t *testing.T) {
	mem := ctTruncatedMapping(t)
	for _, prev := range []bool{false, true} {
		got := make(chan bool, 1)
		go func() {
			debug.SetPanicOnFault(prev)
			defer func() { got <- debug.SetPanicOnFault(false) }()
			_ = sigbus.Guard(mem, func() { runtime.Goexit() })
		}()
		require.Equal(t, prev, <-got, "SetPanicOnFault restored on the Goexit path")
	}
}
