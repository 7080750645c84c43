package iosafety

import (
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"

	"golang.org/x/tools/go/ast/inspector"
	"golang.org/x/tools/go/types/typeutil"
)

// source is a set of places a descriptor number may have come from.
type source uint16

const (
	srcFresh       source = 1 << iota // returned by a descriptor-creating call
	srcFreshSlice                     // slice or array of fresh descriptors (Socketpair, Pipe)
	srcRights                         // element of ParseUnixRights
	srcRightsSlice                    // result of ParseUnixRights
	srcRightsFile                     // *os.File made by os.NewFile of a received descriptor
	srcFdCall                         // result of (*os.File).Fd
	srcBorrowed                       // fd parameter of a RawConn callback
	srcLiteral                        // non-negative constant
	srcField                          // struct field
	srcGlobal                         // package-level variable
	srcParam                          // function parameter or receiver
	srcOther                          // anything else: unknown calls, arithmetic, …
)

// owned are the sources that prove a number is a descriptor this code owns.
const owned = srcFresh | srcFreshSlice | srcRights | srcRightsSlice

// only reports whether s is non-empty and made only of the sources in bad.
func (s source) only(bad source) bool { return s&bad != 0 && s&^bad == 0 }

// unit is one function body (a FuncDecl, or a FuncLit outside any), with
// the sources of its local variables, by object identity. Function
// literals inside it belong to it: they share its variables.
type unit struct {
	info      *types.Info
	cur       inspector.Cursor
	sources   map[types.Object]source
	params    map[types.Object]bool
	callbacks map[*ast.FuncLit]borrow // borrow callbacks
	sum       *summaries
	cloexec   int // 1 when the unit calls CloseOnExec, -1 when not, 0 unknown yet

	// localFuncs are the literals whose calls are all in sight, by the
	// variable holding them (or by themselves when called on the spot).
	localFuncs map[any]*ast.FuncLit
}

// setsCloexec reports whether the unit calls unix or syscall CloseOnExec.
func (u *unit) setsCloexec() bool {
	if u.cloexec == 0 {
		u.cloexec = -1
		for cur := range u.cur.Preorder((*ast.CallExpr)(nil)) {
			if name, _ := sysFunc(u.info, cur.Node().(*ast.CallExpr)); name == "CloseOnExec" {
				u.cloexec = 1
				break
			}
		}
	}
	return u.cloexec > 0
}

// borrow is a callback that borrows a descriptor.
type borrow struct {
	param  *types.Var // the descriptor parameter, nil when unnamed
	method string     // Control, Read or Write
}

func newUnit(info *types.Info, cur inspector.Cursor, sum *summaries) *unit {
	u := &unit{
		info:      info,
		cur:       cur,
		sources:   map[types.Object]source{},
		params:    map[types.Object]bool{},
		callbacks: map[*ast.FuncLit]borrow{},
		sum:       sum,
	}
	addParams := func(fl *ast.FieldList) {
		if fl == nil {
			return
		}
		for _, f := range fl.List {
			for _, n := range f.Names {
				if obj := info.Defs[n]; obj != nil {
					u.params[obj] = true
				}
			}
		}
	}
	if d, ok := cur.Node().(*ast.FuncDecl); ok {
		addParams(d.Recv)
	}
	for c := range cur.Preorder((*ast.FuncType)(nil), (*ast.CallExpr)(nil)) {
		switch n := c.Node().(type) {
		case *ast.FuncType:
			addParams(n.Params)
		case *ast.CallExpr:
			if lit, p, name := borrowCallback(info, n); lit != nil {
				u.callbacks[lit] = borrow{p, name}
				if p != nil {
					delete(u.params, p)
					u.sources[p] = srcBorrowed
				}
			}
		}
	}
	// A callback's FuncType is visited before the call is: drop the params
	// again that turned out to be borrowed descriptors.
	for _, b := range u.callbacks {
		if b.param != nil {
			delete(u.params, b.param)
		}
	}
	u.localFuncs = localFuncs(info, cur)
	for _, lit := range u.localFuncs {
		for _, f := range lit.Type.Params.List {
			for _, n := range f.Names {
				delete(u.params, info.Defs[n])
			}
		}
	}
	u.propagate()
	return u
}

// localFuncs finds the function literals whose every call is in sight:
// called on the spot, or held by a local variable that is assigned only
// that literal and only ever called. Their parameters take the sources of
// the arguments instead of counting as parameters of unknown origin.
func localFuncs(info *types.Info, cur inspector.Cursor) map[any]*ast.FuncLit {
	lits := map[any]*ast.FuncLit{}
	bad := map[types.Object]bool{}
	for c := range cur.Preorder((*ast.AssignStmt)(nil), (*ast.ValueSpec)(nil)) {
		var lhs []*ast.Ident
		var rhs []ast.Expr
		switch n := c.Node().(type) {
		case *ast.AssignStmt:
			if n.Tok != token.DEFINE || len(n.Lhs) != len(n.Rhs) {
				continue
			}
			for _, l := range n.Lhs {
				id, _ := l.(*ast.Ident)
				lhs = append(lhs, id)
			}
			rhs = n.Rhs
		case *ast.ValueSpec:
			if len(n.Names) != len(n.Values) {
				continue
			}
			lhs, rhs = n.Names, n.Values
		}
		for i, id := range lhs {
			lit, ok := ast.Unparen(rhs[i]).(*ast.FuncLit)
			if id == nil || !ok {
				continue
			}
			if obj := info.Defs[id]; obj != nil {
				lits[obj] = lit
			}
		}
	}
	for c := range cur.Preorder((*ast.Ident)(nil)) {
		id := c.Node().(*ast.Ident)
		obj := info.Uses[id]
		if _, ok := lits[obj]; !ok {
			continue
		}
		if call, ok := c.Parent().Node().(*ast.CallExpr); !ok || call.Fun != id {
			bad[obj] = true // reassigned, passed on or stored: callers out of sight
		}
	}
	for obj := range bad {
		delete(lits, obj)
	}
	for c := range cur.Preorder((*ast.CallExpr)(nil)) {
		call := c.Node().(*ast.CallExpr)
		if lit, ok := ast.Unparen(call.Fun).(*ast.FuncLit); ok {
			lits[lit] = lit // called on the spot; keyed by itself, never an object
		}
	}
	return lits
}

// localCallee returns the literal that call calls, if its calls are all
// in sight.
func (u *unit) localCallee(call *ast.CallExpr) *ast.FuncLit {
	switch f := ast.Unparen(call.Fun).(type) {
	case *ast.FuncLit:
		return u.localFuncs[f]
	case *ast.Ident:
		if obj := u.info.Uses[f]; obj != nil {
			return u.localFuncs[obj]
		}
	}
	return nil
}

// propagate computes the sources of local variables from their
// assignments, flow-insensitively, to a fixed point.
func (u *unit) propagate() {
	for changed := true; changed; {
		changed = false
		flow := func(lhs ast.Expr, s source) {
			id, ok := ast.Unparen(lhs).(*ast.Ident)
			if !ok || id.Name == "_" || s == 0 {
				return
			}
			obj := u.info.ObjectOf(id)
			v, ok := obj.(*types.Var)
			if !ok || v.IsField() || isPackageLevel(v) {
				return
			}
			if old := u.sources[v]; old|s != old {
				u.sources[v] = old | s
				changed = true
			}
		}
		for c := range u.cur.Preorder((*ast.AssignStmt)(nil), (*ast.ValueSpec)(nil),
			(*ast.RangeStmt)(nil), (*ast.CallExpr)(nil)) {
			switch n := c.Node().(type) {
			case *ast.AssignStmt:
				switch {
				case n.Tok != token.ASSIGN && n.Tok != token.DEFINE:
					for _, l := range n.Lhs {
						flow(l, srcOther)
					}
				case len(n.Lhs) == len(n.Rhs):
					for i := range n.Lhs {
						flow(n.Lhs[i], u.sourceOf(n.Rhs[i]))
					}
				case len(n.Rhs) == 1:
					for i := range n.Lhs {
						flow(n.Lhs[i], u.resultSource(n.Rhs[0], i))
					}
				}
			case *ast.ValueSpec:
				switch {
				case len(n.Names) == len(n.Values):
					for i := range n.Names {
						flow(n.Names[i], u.sourceOf(n.Values[i]))
					}
				case len(n.Values) == 1:
					for i := range n.Names {
						flow(n.Names[i], u.resultSource(n.Values[0], i))
					}
				}
			case *ast.RangeStmt:
				if n.Key != nil {
					flow(n.Key, srcOther)
				}
				if n.Value != nil {
					flow(n.Value, elemSource(u.sourceOf(n.X)))
				}
			case *ast.CallExpr:
				// A call of a local literal assigns its parameters.
				if lit := u.localCallee(n); lit != nil {
					var ps []*ast.Ident
					for _, f := range lit.Type.Params.List {
						ps = append(ps, f.Names...)
						if len(f.Names) == 0 {
							ps = append(ps, nil)
						}
					}
					for i, p := range ps {
						if p == nil {
							continue
						}
						if len(n.Args) != len(ps) || n.Ellipsis.IsValid() {
							flow(p, srcOther)
						} else {
							flow(p, u.sourceOf(n.Args[i]))
						}
					}
				}
				// Pipe(p) and Pipe2(p, flags) fill p with fresh descriptors.
				if name, _ := sysFunc(u.info, n); (name == "Pipe" || name == "Pipe2") && len(n.Args) > 0 {
					if root := rootIdent(n.Args[0]); root != nil {
						flow(root, srcFreshSlice)
					}
				}
			}
		}
	}
}

func isPackageLevel(v *types.Var) bool {
	return v.Pkg() != nil && v.Parent() == v.Pkg().Scope()
}

// rootIdent returns the variable at the root of p, p[:], (p), &p.
func rootIdent(e ast.Expr) *ast.Ident {
	for {
		switch x := ast.Unparen(e).(type) {
		case *ast.Ident:
			return x
		case *ast.SliceExpr:
			e = x.X
		case *ast.UnaryExpr:
			e = x.X
		default:
			return nil
		}
	}
}

// elemSource is the source of an element of a slice or array from s.
func elemSource(s source) source {
	var r source
	if s&srcFreshSlice != 0 {
		r |= srcFresh
	}
	if s&srcRightsSlice != 0 {
		r |= srcRights
	}
	return r | s&(srcField|srcGlobal|srcParam|srcOther|srcBorrowed|srcLiteral)
}

// resultSource is the source of result i of a multi-valued expression.
func (u *unit) resultSource(e ast.Expr, i int) source {
	call, ok := ast.Unparen(e).(*ast.CallExpr)
	if !ok || i != 0 {
		return srcOther
	}
	return u.callSource(call)
}

// callSource is the source of the first result of call.
func (u *unit) callSource(call *ast.CallExpr) source {
	if name, pkg := sysFunc(u.info, call); pkg != nil {
		switch {
		case freshFuncs[name]:
			return srcFresh
		case name == "Socketpair":
			return srcFreshSlice
		case name == "ParseUnixRights":
			return srcRightsSlice
		case name == "FcntlInt" && len(call.Args) == 3 &&
			constIs(u.info, pkg, call.Args[1], "F_DUPFD", "F_DUPFD_CLOEXEC"):
			return srcFresh
		}
		return srcOther
	}
	if isFdCall(u.info, call) {
		return srcFdCall
	}
	if s, ok := u.sum.calleeSource(typeutil.StaticCallee(u.info, call)); ok {
		return s
	}
	if isPkgFunc(u.info, call, "os", "NewFile") && len(call.Args) == 2 &&
		u.sourceOf(call.Args[0])&srcRights != 0 {
		return srcRightsFile
	}
	return srcOther
}

// sourceOf is the set of sources of the value of e.
func (u *unit) sourceOf(e ast.Expr) source {
	e = ast.Unparen(e)
	if tv, ok := u.info.Types[e]; ok && tv.Value != nil {
		if tv.Value.Kind() == constant.Int && constant.Sign(tv.Value) >= 0 {
			return srcLiteral
		}
		return 0 // a negative sentinel such as -1 is no descriptor
	}
	switch x := e.(type) {
	case *ast.Ident:
		v, ok := u.info.ObjectOf(x).(*types.Var)
		if !ok {
			return srcOther
		}
		if v.IsField() {
			return srcField
		}
		if isPackageLevel(v) {
			return srcGlobal
		}
		s := u.sources[v]
		if u.params[v] {
			s |= u.sum.paramSource(v)
		}
		return s
	case *ast.SelectorExpr:
		if sel := u.info.Selections[x]; sel != nil {
			if sel.Kind() == types.FieldVal {
				return srcField
			}
			return srcOther
		}
		if v, ok := u.info.Uses[x.Sel].(*types.Var); ok && isPackageLevel(v) {
			return srcGlobal // pkg.Var
		}
		return srcOther
	case *ast.IndexExpr:
		return elemSource(u.sourceOf(x.X))
	case *ast.SliceExpr:
		return u.sourceOf(x.X)
	case *ast.CallExpr:
		if tv, ok := u.info.Types[x.Fun]; ok && tv.IsType() && len(x.Args) == 1 {
			return u.sourceOf(x.Args[0]) // conversion
		}
		return u.callSource(x)
	}
	return srcOther
}
