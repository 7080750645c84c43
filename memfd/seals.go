package memfd

import (
	"fmt"
	"strconv"
	"strings"
)

// Seals is a set of memfd seals (fcntl F_ADD_SEALS / F_GET_SEALS bits; see
// fcntl(2), "File Sealing"). Its bits, in kernel bit order:
//
//	SealSeal         0x01  the set of seals can no longer change
//	SealShrink       0x02  the file cannot get smaller
//	SealGrow         0x04  the file cannot get larger
//	SealWrite        0x08  the contents cannot change
//	SealFutureWrite  0x10  no new writes or writable mappings
//	SealExec         0x20  the exec permission bits cannot change
//
// String prints them as seal|shrink|grow|write|future_write|exec.
type Seals uint32

// SealSeal (F_SEAL_SEAL): the set of seals can no longer change; add it
// last.
const SealSeal Seals = 0x01

// SealShrink (F_SEAL_SHRINK): the file cannot get smaller, so a mapping of
// it can never fault through truncation.
const SealShrink Seals = 0x02

// SealGrow (F_SEAL_GROW): the file cannot get larger.
const SealGrow Seals = 0x04

// SealWrite (F_SEAL_WRITE): the contents cannot change, through write or a
// mapping. Adding it fails with unix.EBUSY while a writable shared mapping
// exists.
const SealWrite Seals = 0x08

// SealFutureWrite (F_SEAL_FUTURE_WRITE): no new writes or writable mappings;
// writable mappings that already exist keep working.
const SealFutureWrite Seals = 0x10

// SealExec (F_SEAL_EXEC, Linux 6.3+): the exec permission bits cannot
// change. Create's no-exec memfds get it from the kernel.
const SealExec Seals = 0x20

// SealImmutable is the set a consumer needs to treat the bytes as a plain,
// fault-free, immutable []byte: no shrink, no grow, no write.
const SealImmutable Seals = SealShrink | SealGrow | SealWrite

var sealNames = [...]string{"seal", "shrink", "grow", "write", "future_write", "exec"}

const knownSeals Seals = 1<<len(sealNames) - 1

// String joins the names of the set seals with "|" in kernel bit order, for
// example "seal|shrink|grow|write". The empty set is "none". Bits the kernel
// may add in the future are printed as one hexadecimal token ("0x40"), which
// ParseSeals accepts back.
func (s Seals) String() string {
	if s == 0 {
		return "none"
	}
	var b strings.Builder
	for i, name := range sealNames {
		if s&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(name)
		}
	}
	if rest := s &^ knownSeals; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	return b.String()
}

// Has reports whether every seal in x is set in s. Has(0) is true.
func (s Seals) Has(x Seals) bool { return s&x == x }

// Missing returns the seals of want that s lacks.
func (s Seals) Missing(want Seals) Seals { return want &^ s }

// ParseSeals parses what String prints: seal names joined by "|", in any
// order, with optional spaces around each name, or "none" alone for the empty
// set. It fails on an empty string, an empty or unknown token, and "none"
// mixed with other tokens. A hexadecimal token ("0x40") is accepted only for
// bits that have no name, as String prints them.
func ParseSeals(str string) (Seals, error) {
	var s Seals
	tokens := strings.Split(str, "|")
	for _, raw := range tokens {
		tok := strings.TrimSpace(raw)
		switch {
		case tok == "":
			return 0, fmt.Errorf("memfd: parse seals %q: empty token; want names such as shrink|grow|write, or none", str)
		case tok == "none":
			if len(tokens) != 1 {
				return 0, fmt.Errorf("memfd: parse seals %q: \"none\" cannot be combined with other seals", str)
			}
			return 0, nil
		case strings.HasPrefix(tok, "0x"):
			v, err := strconv.ParseUint(tok[2:], 16, 32)
			if err != nil || v == 0 || Seals(v)&knownSeals != 0 {
				return 0, fmt.Errorf("memfd: parse seals %q: unknown token %q; hexadecimal is only for unnamed bits", str, tok)
			}
			s |= Seals(v)
		default:
			bit := -1
			for i, name := range sealNames {
				if tok == name {
					bit = i
					break
				}
			}
			if bit < 0 {
				return 0, fmt.Errorf("memfd: parse seals %q: unknown seal %q; known: %s", str, tok, strings.Join(sealNames[:], ", "))
			}
			s |= 1 << bit
		}
	}
	return s, nil
}
