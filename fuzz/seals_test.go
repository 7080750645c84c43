package fuzz

import (
	"strings"
	"testing"

	"github.com/sealbuf/sealbuf/memfd"
)

var sealNames = []string{"seal", "shrink", "grow", "write", "future_write", "exec"}

// FuzzParseSeals checks both directions of the ParseSeals/String round trip:
// every Seals value prints to a string that parses back to it, and every
// string ParseSeals accepts names a value whose String parses back to the
// same value.
func FuzzParseSeals(f *testing.F) {
	for _, s := range []string{
		"none", "seal", "shrink|grow", "grow|shrink", "write|grow|shrink",
		"seal|shrink|grow|write|future_write|exec", "exec|seal",
		"", "|", "shrink||grow", "bogus", "none|shrink", "shrink|none",
		"0x40", "shrink|0x40", "0x1", " shrink | grow ",
	} {
		f.Add(s, uint32(0))
	}
	for _, v := range []uint32{1, 0x3f, 0x0e, 0x40, 0x20 | 0x80, 1 << 31, ^uint32(0)} {
		f.Add("", v)
	}

	f.Fuzz(func(t *testing.T, str string, bits uint32) {
		// Value → string → value.
		v := memfd.Seals(bits)
		s := v.String()
		if s == "" {
			t.Fatalf("Seals(%#x).String() is empty", bits)
		}
		if (bits == 0) != (s == "none") {
			t.Fatalf("Seals(%#x).String() = %q", bits, s)
		}
		back, err := memfd.ParseSeals(s)
		if err != nil {
			t.Fatalf("ParseSeals(Seals(%#x).String() = %q): %v", bits, s, err)
		}
		if back != v {
			t.Fatalf("ParseSeals(%q) = %#x, want %#x", s, uint32(back), bits)
		}
		checkCanonical(t, v, s)

		// String → value → string.
		p, err := memfd.ParseSeals(str)
		if err != nil {
			if p != 0 {
				t.Fatalf("ParseSeals(%q) failed (%v) but returned %#x", str, err, uint32(p))
			}
			if err.Error() == "" {
				t.Fatalf("ParseSeals(%q): empty error message", str)
			}
			checkRefusal(t, str)
			return
		}
		ps := p.String()
		again, err := memfd.ParseSeals(ps)
		if err != nil {
			t.Fatalf("ParseSeals(%q) = %#x, whose String %q does not parse: %v", str, uint32(p), ps, err)
		}
		if again != p {
			t.Fatalf("ParseSeals(%q) = %#x, String %q, parses back to %#x", str, uint32(p), ps, uint32(again))
		}
		if again.String() != ps {
			t.Fatalf("String is not canonical: %q then %q", ps, again.String())
		}
		checkAccepted(t, str, p)
	})
}

// checkCanonical checks String's form: known names in kernel bit order,
// joined by "|", no empty tokens, "none" only alone.
func checkCanonical(t *testing.T, v memfd.Seals, s string) {
	t.Helper()
	if v == 0 {
		return
	}
	tokens := strings.Split(s, "|")
	last := -1
	for _, tok := range tokens {
		if tok == "" || tok == "none" || strings.TrimSpace(tok) != tok {
			t.Fatalf("Seals(%#x).String() = %q: bad token %q", uint32(v), s, tok)
		}
		i := indexOf(tok)
		if i < 0 {
			if !strings.HasPrefix(tok, "0x") {
				t.Fatalf("Seals(%#x).String() = %q: unknown token %q", uint32(v), s, tok)
			}
			i = len(sealNames) // unnamed bits come last
		}
		if i <= last {
			t.Fatalf("Seals(%#x).String() = %q: not in kernel bit order", uint32(v), s)
		}
		last = i
		if i < len(sealNames) && v&(1<<i) == 0 {
			t.Fatalf("Seals(%#x).String() = %q names an unset seal %q", uint32(v), s, tok)
		}
	}
	for i, name := range sealNames {
		if v&(1<<i) != 0 && indexIn(tokens, name) < 0 {
			t.Fatalf("Seals(%#x).String() = %q lacks %q", uint32(v), s, name)
		}
	}
}

// checkRefusal checks that a refused string really breaks a rule: it must
// not consist only of known names (no "none"), each non-empty, in any order.
func checkRefusal(t *testing.T, str string) {
	t.Helper()
	if str == "none" {
		t.Fatalf("ParseSeals(%q) refused", str)
	}
	for _, tok := range strings.Split(str, "|") {
		if indexOf(tok) < 0 {
			return // an unknown, empty or "none" token: refusal is right
		}
	}
	t.Fatalf("ParseSeals(%q) refused a string made only of known seal names", str)
}

// checkAccepted checks an accepted string against the rules: no empty token,
// "none" only alone, every named token's bit set in the result and no named
// bit set that no token names.
func checkAccepted(t *testing.T, str string, p memfd.Seals) {
	t.Helper()
	tokens := strings.Split(str, "|")
	var named memfd.Seals
	for _, raw := range tokens {
		tok := strings.TrimSpace(raw)
		switch {
		case tok == "":
			t.Fatalf("ParseSeals(%q) accepted an empty token", str)
		case tok == "none":
			if len(tokens) != 1 {
				t.Fatalf("ParseSeals(%q) accepted none mixed with others", str)
			}
		case indexOf(tok) >= 0:
			named |= 1 << indexOf(tok)
		case strings.HasPrefix(tok, "0x"):
			// Unnamed bits, as String prints them.
		default:
			t.Fatalf("ParseSeals(%q) accepted unknown token %q", str, tok)
		}
	}
	const known = 1<<6 - 1
	if p&known != named {
		t.Fatalf("ParseSeals(%q) = %#x, but its names give %#x", str, uint32(p), uint32(named))
	}
}

func indexOf(tok string) int { return indexIn(sealNames, tok) }

func indexIn(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
