package memfd

import (
	"fmt"
	"strconv"
	"strings"
)

// Seals is a set of memfd seals (fcntl F_ADD_SEALS / F_GET_SEALS bits).
type Seals uint32

// The seals, in kernel bit order. See fcntl(2) "File Sealing".
const (
	SealSeal        Seals = 0x01 // F_SEAL_SEAL: the seal set itself can no longer change
	SealShrink      Seals = 0x02 // F_SEAL_SHRINK: the file cannot get smaller
	SealGrow        Seals = 0x04 // F_SEAL_GROW: the file cannot get larger
	SealWrite       Seals = 0x08 // F_SEAL_WRITE: the contents cannot change
	SealFutureWrite Seals = 0x10 // F_SEAL_FUTURE_WRITE: no new writable mappings or writes; existing writable mappings stay
	SealExec        Seals = 0x20 // F_SEAL_EXEC: the exec permission bits cannot change (Linux 6.3+)
)

// SealImmutable is the set a consumer needs to treat the bytes as a plain,
// fault-free, immutable []byte: no shrink, no grow, no write.
const SealImmutable = SealShrink | SealGrow | SealWrite

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
