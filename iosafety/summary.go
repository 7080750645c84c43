package iosafety

import (
	"go/ast"
	"go/types"

	"golang.org/x/tools/go/ast/inspector"
	"golang.org/x/tools/go/types/typeutil"
)

// summaries carry descriptor sources across the functions of one package:
// what a function returns, and, for an unexported function that is only
// ever called directly, what its callers pass. They let
//
//	fds := recvFds(conn)        // returns unix.ParseUnixRights(…)
//	ln, err := rebuild(fds[0])  // rebuild(fd int) calls os.NewFile(uintptr(fd), "")
//
// be seen as adopting a received descriptor, not a parameter of unknown
// ownership.
type summaries struct {
	results    map[*types.Func]source // sources of the first result
	params     map[*types.Var]source  // sources passed by every call site
	candidates map[*types.Func]bool   // unexported functions only called directly
}

// maxRounds bounds the rounds of summary refinement.
const maxRounds = 4

// buildUnits computes the units of the package with summaries refined to a
// fixed point (or for maxRounds rounds).
func buildUnits(info *types.Info, insp *inspector.Inspector) []*unit {
	var curs []inspector.Cursor
	for cur := range insp.Root().Preorder((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
		switch n := cur.Node().(type) {
		case *ast.FuncLit:
			inside := false
			for range cur.Parent().Enclosing((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
				inside = true
				break
			}
			if inside {
				continue // part of the enclosing function's unit
			}
		case *ast.FuncDecl:
			if n.Body == nil {
				continue
			}
		}
		curs = append(curs, cur)
	}
	sum := &summaries{
		results:    map[*types.Func]source{},
		params:     map[*types.Var]source{},
		candidates: directlyCalled(info, insp),
	}
	var units []*unit
	for range maxRounds {
		units = units[:0]
		for _, cur := range curs {
			units = append(units, newUnit(info, cur, sum))
		}
		if !sum.update(info, units) {
			break
		}
	}
	return units
}

// directlyCalled returns the unexported package-level functions whose every
// use is a direct call: all their callers are in sight.
func directlyCalled(info *types.Info, insp *inspector.Inspector) map[*types.Func]bool {
	cand := map[*types.Func]bool{}
	for cur := range insp.Root().Preorder((*ast.FuncDecl)(nil)) {
		d := cur.Node().(*ast.FuncDecl)
		fn, ok := info.Defs[d.Name].(*types.Func)
		if ok && d.Recv == nil && d.Body != nil && !fn.Exported() && d.Name.Name != "init" &&
			d.Name.Name != "main" && fn.Signature().TypeParams() == nil {
			cand[fn] = true
		}
	}
	for cur := range insp.Root().Preorder((*ast.Ident)(nil)) {
		id := cur.Node().(*ast.Ident)
		fn, ok := info.Uses[id].(*types.Func)
		if !ok || !cand[fn] {
			continue
		}
		if call, ok := cur.Parent().Node().(*ast.CallExpr); !ok || call.Fun != id {
			delete(cand, fn) // used as a value: callers out of sight
		}
	}
	return cand
}

// update recomputes the summaries from units and reports whether they
// changed.
func (s *summaries) update(info *types.Info, units []*unit) bool {
	results := map[*types.Func]source{}
	params := map[*types.Var]source{}
	for _, u := range units {
		if d, ok := u.cur.Node().(*ast.FuncDecl); ok {
			if fn, ok := info.Defs[d.Name].(*types.Func); ok {
				if r := u.returned(fn); r != 0 {
					results[fn] = r
				}
			}
		}
		for cur := range u.cur.Preorder((*ast.CallExpr)(nil)) {
			call := cur.Node().(*ast.CallExpr)
			fn := typeutil.StaticCallee(info, call)
			if fn == nil || !s.candidates[fn] {
				continue
			}
			ps := fn.Signature().Params()
			for i := range ps.Len() {
				p := ps.At(i)
				if len(call.Args) != ps.Len() || call.Ellipsis.IsValid() {
					params[p] |= srcOther
					continue
				}
				params[p] |= u.sourceOf(call.Args[i])
			}
		}
	}
	changed := !sameMap(results, s.results) || !sameMap(params, s.params)
	s.results, s.params = results, params
	return changed
}

func sameMap[K comparable](a, b map[K]source) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// returned is the union of the sources of the first result of the
// function fn whose unit u is. Constants are left out: a function that
// returns 0 or -1 with an error is not returning a descriptor.
func (u *unit) returned(fn *types.Func) source {
	res := fn.Signature().Results()
	if res.Len() == 0 {
		return 0
	}
	var s source
	for cur := range u.cur.Preorder((*ast.ReturnStmt)(nil)) {
		own := false
		for e := range cur.Enclosing((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
			own = e == u.cur
			break
		}
		if !own {
			continue
		}
		ret := cur.Node().(*ast.ReturnStmt)
		switch {
		case len(ret.Results) == 0:
			s |= u.sources[res.At(0)]
		case len(ret.Results) == 1 && res.Len() > 1:
			s |= u.resultSource(ret.Results[0], 0)
		default:
			if tv, ok := u.info.Types[ret.Results[0]]; ok && tv.Value != nil {
				continue
			}
			s |= u.sourceOf(ret.Results[0])
		}
	}
	return s
}

// calleeSource is what a call of a function of this package returns,
// when the summary shows it returns descriptors it owns.
func (s *summaries) calleeSource(fn *types.Func) (source, bool) {
	if s == nil || fn == nil {
		return 0, false
	}
	r, ok := s.results[fn]
	if !ok || r == 0 || r&^(owned|srcFdCall) != 0 {
		return 0, false
	}
	return r, true
}

// paramSource is the source of a parameter: what its callers pass when
// they are all in sight, else srcParam.
func (s *summaries) paramSource(v *types.Var) source {
	if s != nil {
		if p, ok := s.params[v]; ok {
			return p
		}
	}
	return srcParam
}
