//go:build linux

package sealbuf

import (
	"errors"

	"github.com/sealbuf/sealbuf/internal/policy"
	"github.com/sealbuf/sealbuf/internal/wire"
)

var (
	// ErrNotSealed is matched (errors.Is) when a memfd lacks seals that the
	// policy requires. The error names each missing seal; the fix is on the
	// sender's side: Seal the Buffer (or add the seals) before sending.
	ErrNotSealed = policy.ErrNotSealed

	// ErrTooLarge is matched when a memfd is larger than the MaxSize policy
	// allows, or too large to map at all: larger than the address space, or
	// refused by mmap with ENOMEM (no room left under RLIMIT_AS, or a
	// hugetlbfs memfd the huge page pool cannot back), which then matches
	// unix.ENOMEM too.
	ErrTooLarge = policy.ErrTooLarge

	// ErrTruncated is matched when an access to a Mapping touched bytes past
	// the file's current end: its peer truncated it. The access's results
	// are undefined; the Mapping stays usable for bytes below the new end.
	// It is matched too when a page inside the mapping is gone although the
	// size did not change (a hole punched in a hugetlbfs memfd whose huge
	// page pool is empty): the error's text says which happened, and the
	// answer is the same.
	ErrTruncated = errors.New("memfd was truncated by its peer")

	// ErrTooManyFiles is matched when a received message carried more
	// descriptors than the Conn's limit (WithMaxFiles), or the kernel
	// truncated its control data (MSG_CTRUNC). All were closed.
	ErrTooManyFiles = wire.ErrTooManyFiles

	// ErrMalformed is matched when a received message does not follow the
	// wire format: a bad stream frame prefix, a descriptor count that does
	// not match the frame's, control data that does not parse.
	ErrMalformed = wire.ErrMalformed
)
