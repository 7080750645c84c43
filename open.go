//go:build linux

package sealbuf

import (
	"fmt"
	"os"

	"github.com/sealbuf/sealbuf/memfd"
)

// Open verifies that f is an immutable memfd and maps it read-only. Before
// anything is mapped it checks, in order, that f is a memfd (or fails
// matching memfd.ErrNotMemfd), that it carries at least the seals
// shrink|grow|write plus any Require'd ones (or fails matching ErrNotSealed,
// naming each missing seal), and that its size fits MaxSize (or fails
// matching ErrTooLarge). A memfd that mmap cannot take (ENOMEM: too little
// address space left, or on hugetlbfs too few free huge pages) fails
// matching ErrTooLarge as well. Descriptors opened O_RDWR and O_RDONLY both
// work.
//
// On success the Sealed owns f: close the Sealed, not f. On error f stays
// the caller's, open and unchanged.
//
// Reads of the result never fault: the seals forbid any change of size or
// contents, by anyone, for as long as the memfd exists.
func Open(f *os.File, opts ...OpenOption) (*Sealed, error) {
	s, err := openWith(f, newOpenPolicy(opts))
	if err != nil {
		return nil, fmt.Errorf("sealbuf: open: %w", err)
	}
	return s, nil
}

// openWith is Open with its policy made; its errors name no operation. It
// requires shrink|grow|write whatever p says: a Sealed's bytes are read
// without a fault guard, which only those seals make safe.
func openWith(f *os.File, p openPolicy) (*Sealed, error) {
	file, info, err := memfd.Adopt(f)
	if err != nil {
		return nil, err
	}
	// From here on f must stay open on error: file wraps f without owning
	// it until Open succeeds, so error paths drop file without closing it.
	size, err := verifyInfo(file.Name(), info, p.require|memfd.SealImmutable, p.maxSize)
	if err != nil {
		return nil, err
	}
	mem, err := mapReadOnly(file, size)
	if err != nil {
		return nil, err
	}
	s := newSealed(file, size, info.Seals)
	s.mem = mem
	return s, nil
}
