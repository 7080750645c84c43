package iosafety

import (
	"go/ast"
	"go/token"
	"go/types"

	"golang.org/x/tools/go/ast/inspector"
)

// checkEscape reports a borrowed descriptor that escapes its callback
// (check fd-escape).
func (c *checker) checkEscape(u *unit, litCur inspector.Cursor, b borrow) {
	info := c.pass.TypesInfo
	lit := litCur.Node().(*ast.FuncLit)
	inside := func(obj types.Object) bool {
		return obj != nil && obj.Pos() >= lit.Pos() && obj.Pos() < lit.End()
	}
	// ownCallback reports whether the innermost borrow callback around cur
	// is lit: a nested callback is checked on its own.
	ownCallback := func(cur inspector.Cursor) bool {
		for e := range cur.Enclosing((*ast.FuncLit)(nil)) {
			if _, ok := u.callbacks[e.Node().(*ast.FuncLit)]; ok {
				return e.Node() == lit
			}
		}
		return false
	}
	report := func(rng ast.Node, where string) {
		c.report(CatFdEscape, rng, nil,
			"the descriptor %s borrowed in this %s callback escapes %s; it is valid only while the callback runs "+
				"(the File may then be closed and the number reused): do the work inside the callback, "+
				"or dup it (unix.Dup, F_DUPFD_CLOEXEC) and own the copy with os.NewFile",
			b.param.Name(), b.method, where)
	}
	for cur := range litCur.Preorder((*ast.AssignStmt)(nil), (*ast.SendStmt)(nil), (*ast.GoStmt)(nil)) {
		if !ownCallback(cur) {
			continue
		}
		switch n := cur.Node().(type) {
		case *ast.AssignStmt:
			if len(n.Lhs) != len(n.Rhs) {
				continue
			}
			for i, rhs := range n.Rhs {
				if !u.carries(rhs) {
					continue
				}
				if where := escapeTarget(info, n.Lhs[i], n.Tok, inside); where != "" {
					report(n, "into "+where)
				}
			}
		case *ast.SendStmt:
			if u.carries(n.Value) {
				report(n, "through a channel send")
			}
		case *ast.GoStmt:
			if u.mentionsBorrowed(n.Call) {
				report(n, "into a goroutine started in the callback")
			}
		}
	}
}

// escapeTarget describes where an assignment to lhs stores a value, or
// returns "" when lhs is local to the callback.
func escapeTarget(info *types.Info, lhs ast.Expr, tok token.Token, inside func(types.Object) bool) string {
	switch x := ast.Unparen(lhs).(type) {
	case *ast.Ident:
		if x.Name == "_" || (tok == token.DEFINE && info.Defs[x] != nil) {
			return ""
		}
		obj := info.ObjectOf(x)
		if inside(obj) {
			return ""
		}
		if v, ok := obj.(*types.Var); ok && isPackageLevel(v) {
			return "package-level variable " + x.Name
		}
		return "variable " + x.Name + " declared outside the callback"
	case *ast.SelectorExpr:
		if sel := info.Selections[x]; sel == nil {
			return "package-level variable " + x.Sel.Name // pkg.Var
		}
		if inside(rootObj(info, x.X)) {
			return ""
		}
		return "field " + x.Sel.Name
	case *ast.IndexExpr:
		if inside(rootObj(info, x.X)) {
			return ""
		}
		return "an element of " + types.ExprString(x.X)
	case *ast.StarExpr:
		return "memory behind pointer " + types.ExprString(x.X)
	}
	return ""
}

// rootObj returns the variable at the root of a chain of selections and
// index expressions, or nil.
func rootObj(info *types.Info, e ast.Expr) types.Object {
	for {
		switch x := ast.Unparen(e).(type) {
		case *ast.Ident:
			return info.ObjectOf(x)
		case *ast.SelectorExpr:
			if info.Selections[x] == nil {
				return info.ObjectOf(x.Sel)
			}
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		default:
			return nil
		}
	}
}

// carries reports whether the value of e is, or holds, a borrowed
// descriptor number: the number itself or a conversion of it, a composite
// literal or append holding it, its address, or a closure capturing it.
func (u *unit) carries(e ast.Expr) bool {
	switch x := ast.Unparen(e).(type) {
	case *ast.Ident:
		v, ok := u.info.ObjectOf(x).(*types.Var)
		return ok && u.sources[v]&srcBorrowed != 0
	case *ast.CallExpr:
		if tv, ok := u.info.Types[x.Fun]; ok && tv.IsType() && len(x.Args) == 1 {
			return u.carries(x.Args[0])
		}
		if id, ok := ast.Unparen(x.Fun).(*ast.Ident); ok {
			if b, ok := u.info.Uses[id].(*types.Builtin); ok && b.Name() == "append" {
				for _, a := range x.Args {
					if u.carries(a) {
						return true
					}
				}
			}
		}
	case *ast.CompositeLit:
		for _, el := range x.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				el = kv.Value
			}
			if u.carries(el) {
				return true
			}
		}
	case *ast.UnaryExpr:
		if x.Op == token.AND {
			return u.carries(x.X)
		}
	case *ast.FuncLit:
		captured := false
		ast.Inspect(x.Body, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				if v, ok := u.info.Uses[id].(*types.Var); ok && u.sources[v]&srcBorrowed != 0 &&
					(v.Pos() < x.Pos() || v.Pos() >= x.End()) {
					captured = true
				}
			}
			return !captured
		})
		return captured
	}
	return false
}

// mentionsBorrowed reports whether n refers to a variable holding a
// borrowed descriptor.
func (u *unit) mentionsBorrowed(n ast.Node) bool {
	found := false
	ast.Inspect(n, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok {
			if v, ok := u.info.Uses[id].(*types.Var); ok && u.sources[v]&srcBorrowed != 0 {
				found = true
			}
		}
		return !found
	})
	return found
}
