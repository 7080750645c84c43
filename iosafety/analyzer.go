package iosafety

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/token"
	"path/filepath"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"
)

// The diagnostic categories, one for each check. They are stable: they
// start every message and name the check in //iosafety:allow and -disable.
const (
	CatFdCall        = "fd-call"
	CatFdEscape      = "fd-escape"
	CatFdField       = "fd-field"
	CatNewFile       = "newfile"
	CatBorrowedClose = "borrowed-close"
	CatSharedState   = "shared-state"
	CatCloexec       = "cloexec"
)

// Categories lists every category, in the order of the checks.
var Categories = []string{
	CatFdCall, CatFdEscape, CatFdField, CatNewFile, CatBorrowedClose,
	CatSharedState, CatCloexec,
}

// Analyzer reports I/O-safety hazards; see the package documentation.
var Analyzer = &analysis.Analyzer{
	Name: "iosafety",
	Doc: `report file descriptors used without owning or borrowing them

Checks (the category starts each message):
  fd-call         (*os.File).Fd(), and net File() used only for Fd()
  fd-escape       a RawConn Control/Read/Write fd that outlives the callback
  fd-field        struct fields holding a bare descriptor number
  newfile         os.NewFile on a number of unknown ownership
  borrowed-close  unix/syscall Close of a descriptor an *os.File owns
  shared-state    offset I/O, F_SETFL, flock/OFD locks on received descriptors
  cloexec         Recvmsg without MSG_CMSG_CLOEXEC, creation without *_CLOEXEC

Silence one finding with //iosafety:allow <category> <reason> on its line
or the line above.`,
	URL:      "https://pkg.go.dev/github.com/sealbuf/sealbuf/iosafety",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

var disable string

func init() {
	Analyzer.Flags.StringVar(&disable, "disable", "",
		"comma-separated categories not to report ("+strings.Join(Categories, ",")+")")
}

// checker holds the state of one pass.
type checker struct {
	pass     *analysis.Pass
	disabled map[string]bool
	allow    map[allowKey][]string // categories allowed on a line
	fields   fieldIndex
}

type allowKey struct {
	file string
	line int
}

func run(pass *analysis.Pass) (any, error) {
	if skipPackage(pass) {
		return nil, nil
	}
	c := &checker{
		pass:     pass,
		disabled: map[string]bool{},
		allow:    map[allowKey][]string{},
	}
	for _, d := range strings.Split(disable, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.disabled[d] = true
		}
	}
	c.readDirectives()
	insp := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	c.fields = c.checkFieldDecls(insp)
	for _, u := range buildUnits(pass.TypesInfo, insp) {
		c.checkUnit(u)
	}
	return nil, nil
}

// skipPackage reports whether pass is a package of the standard library or
// of golang.org/x/sys: they implement the owners and may use raw numbers.
func skipPackage(pass *analysis.Pass) bool {
	p := pass.Pkg.Path()
	if p == "golang.org/x/sys" || strings.HasPrefix(p, "golang.org/x/sys/") {
		return true
	}
	if len(pass.Files) == 0 || build.Default.GOROOT == "" {
		return false
	}
	name := pass.Fset.File(pass.Files[0].Pos()).Name()
	src := filepath.Join(build.Default.GOROOT, "src") + string(filepath.Separator)
	return strings.HasPrefix(name, src)
}

// readDirectives records the //iosafety:allow comments.
func (c *checker) readDirectives() {
	for _, f := range c.pass.Files {
		for _, cg := range f.Comments {
			for _, cm := range cg.List {
				rest, ok := strings.CutPrefix(cm.Text, "//iosafety:allow")
				if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
					continue
				}
				fields := strings.Fields(rest)
				if len(fields) == 0 {
					continue
				}
				pos := c.pass.Fset.Position(cm.Pos())
				k := allowKey{pos.Filename, pos.Line}
				c.allow[k] = append(c.allow[k], strings.Split(fields[0], ",")...)
			}
		}
	}
}

func (c *checker) allowed(cat string, pos token.Pos) bool {
	p := c.pass.Fset.Position(pos)
	for _, line := range []int{p.Line, p.Line - 1} {
		for _, a := range c.allow[allowKey{p.Filename, line}] {
			if a == cat || a == "all" {
				return true
			}
		}
	}
	return false
}

// report reports a diagnostic of category cat at rng, unless disabled or
// allowed by a directive.
func (c *checker) report(cat string, rng analysis.Range, fixes []analysis.SuggestedFix, format string, args ...any) {
	if c.disabled[cat] || c.allowed(cat, rng.Pos()) {
		return
	}
	c.pass.Report(analysis.Diagnostic{
		Pos:            rng.Pos(),
		End:            rng.End(),
		Category:       cat,
		Message:        cat + ": " + fmt.Sprintf(format, args...),
		SuggestedFixes: fixes,
	})
}

// checkUnit runs the checks that look at calls and statements of one
// function body.
func (c *checker) checkUnit(u *unit) {
	for cur := range u.cur.Preorder((*ast.CallExpr)(nil), (*ast.AssignStmt)(nil),
		(*ast.CompositeLit)(nil)) {
		switch n := cur.Node().(type) {
		case *ast.CallExpr:
			c.checkFdCall(u, cur, n)
			c.checkNetFile(u, cur, n)
			c.checkNewFile(u, n)
			c.checkClose(u, n)
			c.checkSharedState(u, n)
			c.checkCloexec(u, n)
		case *ast.AssignStmt:
			c.checkFieldAssign(u, n)
		case *ast.CompositeLit:
			c.checkFieldLit(u, n)
		}
	}
	for cur := range u.cur.Preorder((*ast.FuncLit)(nil)) {
		lit := cur.Node().(*ast.FuncLit)
		if b, ok := u.callbacks[lit]; ok && b.param != nil {
			c.checkEscape(u, cur, b)
		}
	}
}
