package iosafety

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/ast/edge"
	"golang.org/x/tools/go/ast/inspector"
)

// checkFdCall reports (*os.File).Fd() (check fd-call).
func (c *checker) checkFdCall(u *unit, cur inspector.Cursor, call *ast.CallExpr) {
	info := c.pass.TypesInfo
	if !isFdCall(info, call) {
		return
	}
	sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr)
	if !ok || isStdStream(info, sel.X) {
		return
	}
	outer, i := c.argOf(cur)
	if outer != nil && i == 0 && isPkgFunc(info, outer, "os", "NewFile") {
		return // the newfile check reports it, with a better message
	}
	var fixes []analysis.SuggestedFix
	closes := false
	if outer != nil {
		name, _ := sysFunc(info, outer)
		closes = name == "Close" || ((name == "Dup2" || name == "Dup3") && i == 1)
	}
	if fix, ok := c.fdFix(cur, call, sel.X); ok && !closes {
		fixes = append(fixes, fix) // a borrowed Close stays wrong inside Control
	}
	c.report(CatFdCall, call, fixes,
		"Fd() switches the descriptor to blocking mode and its number outlives nothing "+
			"(the File may be closed and the number reused while you use it); "+
			"borrow it with SyscallConn().Control(func(fd uintptr) { … })")
}

// argOf returns the call of which the expression at cur is, up to
// parentheses and conversions, an argument, and the argument's index.
func (c *checker) argOf(cur inspector.Cursor) (*ast.CallExpr, int) {
	info := c.pass.TypesInfo
	for {
		child := cur.Node()
		cur = cur.Parent()
		switch p := cur.Node().(type) {
		case *ast.ParenExpr:
			continue
		case *ast.CallExpr:
			if tv, ok := info.Types[p.Fun]; ok && tv.IsType() {
				continue
			}
			for i, a := range p.Args {
				if a == child {
					return p, i
				}
			}
			return nil, -1
		default:
			return nil, -1
		}
	}
}

// checkNetFile reports File() of a net connection or listener whose result
// is used only for Fd() and Close() (check fd-call).
func (c *checker) checkNetFile(u *unit, cur inspector.Cursor, call *ast.CallExpr) {
	info := c.pass.TypesInfo
	if !isNetFileCall(info, call) {
		return
	}
	var id *ast.Ident
	switch p := cur.Parent().Node().(type) {
	case *ast.AssignStmt:
		if len(p.Rhs) == 1 && len(p.Lhs) == 2 {
			id, _ = p.Lhs[0].(*ast.Ident)
		}
	case *ast.ValueSpec:
		if len(p.Values) == 1 && len(p.Names) == 2 {
			id = p.Names[0]
		}
	}
	if id == nil || id.Name == "_" {
		return
	}
	obj := info.ObjectOf(id)
	fds := 0
	for ic := range u.cur.Preorder((*ast.Ident)(nil)) {
		x := ic.Node().(*ast.Ident)
		if info.Uses[x] != obj {
			continue
		}
		sel, ok := ic.Parent().Node().(*ast.SelectorExpr)
		if !ok || sel.X != x {
			return
		}
		use, ok := ic.Parent().Parent().Node().(*ast.CallExpr)
		if !ok || use.Fun != sel {
			return
		}
		switch sel.Sel.Name {
		case "Fd":
			fds++
		case "Close":
		default:
			return
		}
	}
	if fds == 0 {
		return
	}
	recv := ""
	if sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr); ok {
		recv = types.TypeString(info.TypeOf(sel.X), func(p *types.Package) string { return p.Name() })
	}
	c.report(CatFdCall, call, nil,
		"(%s).File() dups the descriptor and switches it to blocking mode, and the copy is used only for Fd(); "+
			"borrow the connection's own descriptor with SyscallConn().Control instead", recv)
}

// fdFix rewrites the statement around an Fd() call into a Control callback
// when that is mechanical: the statement is an expression statement, or an
// assignment of one call to one error variable.
func (c *checker) fdFix(cur inspector.Cursor, call *ast.CallExpr, recv ast.Expr) (analysis.SuggestedFix, bool) {
	info := c.pass.TypesInfo
	var none analysis.SuggestedFix
	if !isPure(recv) || c.pass.ReadFile == nil {
		return none, false
	}
	var stmtCur inspector.Cursor
	found := false
	for e := range cur.Enclosing() {
		if _, ok := e.Node().(ast.Stmt); ok {
			stmtCur, found = e, true
			break
		}
	}
	if !found {
		return none, false
	}
	switch stmtCur.ParentEdgeKind() {
	case edge.BlockStmt_List, edge.CaseClause_Body, edge.CommClause_Body:
	default:
		return none, false
	}
	stmt := stmtCur.Node()
	calls := 0
	names := map[string]bool{}
	ast.Inspect(stmt, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.CallExpr:
			if isFdCall(info, x) {
				calls++
			}
		case *ast.Ident:
			names[x.Name] = true
		}
		return true
	})
	if calls != 1 {
		return none, false
	}
	tf := c.pass.Fset.File(stmt.Pos())
	src, err := c.pass.ReadFile(tf.Name())
	if err != nil || tf.Size() != len(src) {
		return none, false
	}
	text := func(from, to token.Pos) string { return string(src[tf.Offset(from):tf.Offset(to)]) }
	lineStart := tf.Offset(tf.LineStart(tf.Line(stmt.Pos())))
	indent := string(src[lineStart:tf.Offset(stmt.Pos())])
	if strings.TrimLeft(indent, " \t") != "" {
		return none, false
	}
	fd, rc, rcErr, ctlErr := fresh(names, "fd"), fresh(names, "rc"), fresh(names, "rcErr"), fresh(names, "ctlErr")
	recvSrc := text(recv.Pos(), recv.End())
	var out string
	switch s := stmt.(type) {
	case *ast.ExprStmt:
		body := text(s.Pos(), call.Pos()) + fd + text(call.End(), s.End())
		out = fmt.Sprintf("if %s, %s := %s.SyscallConn(); %s == nil {\n%s\t_ = %s.Control(func(%s uintptr) { %s })\n%s}",
			rc, rcErr, recvSrc, rcErr, indent, rc, fd, body, indent)
	case *ast.AssignStmt:
		if len(s.Lhs) != 1 || len(s.Rhs) != 1 || call.Pos() < s.Rhs[0].Pos() || call.End() > s.Rhs[0].End() {
			return none, false
		}
		if !types.Identical(info.TypeOf(s.Lhs[0]), types.Universe.Lookup("error").Type()) {
			return none, false
		}
		lhs := text(s.Lhs[0].Pos(), s.Lhs[0].End())
		switch s.Tok {
		case token.ASSIGN:
		case token.DEFINE:
			out = "var " + lhs + " error\n" + indent
		default:
			return none, false
		}
		rhs := text(s.Rhs[0].Pos(), call.Pos()) + fd + text(call.End(), s.Rhs[0].End())
		out += fmt.Sprintf("if %[1]s, %[2]s := %[3]s.SyscallConn(); %[2]s != nil {\n"+
			"%[6]s\t%[4]s = %[2]s\n"+
			"%[6]s} else if %[7]s := %[1]s.Control(func(%[8]s uintptr) { %[4]s = %[5]s }); %[7]s != nil {\n"+
			"%[6]s\t%[4]s = %[7]s\n"+
			"%[6]s}",
			rc, rcErr, recvSrc, lhs, rhs, indent, ctlErr, fd)
	default:
		return none, false
	}
	return analysis.SuggestedFix{
		Message:   "Borrow the descriptor with SyscallConn().Control",
		TextEdits: []analysis.TextEdit{{Pos: stmt.Pos(), End: stmt.End(), NewText: []byte(out)}},
	}, true
}

// isPure reports whether e is a variable or a chain of field selections,
// which can be evaluated twice.
func isPure(e ast.Expr) bool {
	switch x := ast.Unparen(e).(type) {
	case *ast.Ident:
		return true
	case *ast.SelectorExpr:
		return isPure(x.X)
	}
	return false
}

// fresh returns base, or base with a number, that is not in names.
func fresh(names map[string]bool, base string) string {
	name := base
	for i := 2; names[name]; i++ {
		name = fmt.Sprintf("%s%d", base, i)
	}
	names[name] = true
	return name
}
