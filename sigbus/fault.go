package sigbus

import (
	"errors"
	"strconv"
)

// ErrFault is matched by every [*FaultError]: errors.Is(err, ErrFault).
var ErrFault = errors.New("sigbus: memory fault in a guarded mapping")

// FaultError reports a memory fault inside the slice given to [Guard].
type FaultError struct {
	// Addr is the fault address the runtime reported. It lies inside the
	// guarded slice but is not always the first byte that failed.
	Addr uintptr
	// Offset is Addr minus the address of the guarded slice's first byte.
	Offset int64
}

func (e *FaultError) Error() string {
	return "sigbus: memory fault at offset " + strconv.FormatInt(e.Offset, 10) +
		" of the guarded mapping:" +
		" the file behind it was probably truncated by another process;" +
		" treat whatever the access produced as invalid, then check the file's size and remap or stop using it"
}

// Is reports whether target is [ErrFault].
func (e *FaultError) Is(target error) bool { return target == ErrFault }
