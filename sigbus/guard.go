package sigbus

import (
	"runtime"
	"runtime/debug"
	"unsafe"
)

// Guard calls fn on the calling goroutine with [debug.SetPanicOnFault]
// enabled and returns nil if fn returns normally.
//
// If fn faults at an address inside mem, that is in
// [&mem[0], &mem[0]+len(mem)), Guard returns a [*FaultError]. Every other
// panic — a fault outside mem, any fault when len(mem) == 0, a nil
// dereference, an ordinary panic — is re-panicked with the same value.
// runtime.Goexit in fn is not intercepted.
//
// Guard restores the goroutine's previous SetPanicOnFault setting on every
// path. It never reads, writes or remaps mem itself. Only accesses made by fn
// on this goroutine are covered; see the package documentation for the
// faults that still crash the process.
func Guard(mem []byte, fn func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// Only the runtime's own fault panics count: a panic value of the
		// caller's that happens to have an Addr method is not a fault.
		f, ok := r.(interface{ Addr() uintptr })
		if _, isRuntime := r.(runtime.Error); !ok || !isRuntime {
			panic(r)
		}
		addr := f.Addr()
		off, ok := offset(mem, addr)
		if !ok {
			panic(r)
		}
		err = &FaultError{Addr: addr, Offset: off}
	}()
	fn()
	return nil
}

// offset returns addr's offset in mem and whether addr lies inside mem.
func offset(mem []byte, addr uintptr) (int64, bool) {
	if len(mem) == 0 {
		return 0, false
	}
	off := addr - uintptr(unsafe.Pointer(unsafe.SliceData(mem))) // wraps if addr is below mem
	if off >= uintptr(len(mem)) {
		return 0, false
	}
	return int64(off), true
}
