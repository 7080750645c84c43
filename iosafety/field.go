package iosafety

import (
	"go/ast"
	"go/types"
	"strings"

	"golang.org/x/tools/go/ast/inspector"
)

// fieldIndex has the fields of the struct types declared in the package.
type fieldIndex map[*types.Var]*fieldState

type fieldState struct {
	abi      bool // its struct mirrors a kernel structure, or is local to a function
	reported bool
}

// checkFieldDecls reports struct fields named like a descriptor with a
// bare integer type (check fd-field) and indexes the package's fields.
func (c *checker) checkFieldDecls(insp *inspector.Inspector) fieldIndex {
	info := c.pass.TypesInfo
	idx := fieldIndex{}
	for cur := range insp.Root().Preorder((*ast.StructType)(nil)) {
		n := cur.Node().(*ast.StructType)
		st, ok := info.TypeOf(n).(*types.Struct)
		if !ok {
			continue
		}
		// A struct type declared in a function is a transient carrier, such
		// as the result tuple of a callback, not an owner: leave it out.
		local := false
		for range cur.Enclosing((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
			local = true
			break
		}
		abi := local || isABIStruct(st)
		remote := hasPIDField(st)
		for _, f := range n.Fields.List {
			for _, name := range f.Names {
				v, ok := info.Defs[name].(*types.Var)
				if !ok {
					continue
				}
				fs := &fieldState{abi: abi}
				idx[v] = fs
				// A field with a struct tag is serialized data, and a number
				// next to a pid names a descriptor of that process (as in
				// /proc/PID/fd/N): neither is this process's descriptor.
				if abi || remote || f.Tag != nil || !looksLikeFdName(name.Name, v.Type()) || !isBareFdType(v.Type()) {
					continue
				}
				fs.reported = true
				c.report(CatFdField, name, nil,
					"field %s holds a bare descriptor number (%s): nothing owns it, so it can be closed twice, "+
						"leaked, or used after the number was reused; hold an *os.File (or a type that owns one) "+
						"and borrow the number with SyscallConn().Control",
					name.Name, types.TypeString(v.Type(), types.RelativeTo(c.pass.Pkg)))
			}
		}
	}
	return idx
}

// checkFieldAssign reports a fresh descriptor assigned to a field of the
// package's structs (check fd-field).
func (c *checker) checkFieldAssign(u *unit, n *ast.AssignStmt) {
	for i, lhs := range n.Lhs {
		var s source
		switch {
		case len(n.Lhs) == len(n.Rhs):
			s = u.sourceOf(n.Rhs[i])
		case len(n.Rhs) == 1:
			s = u.resultSource(n.Rhs[0], i)
		}
		sel, ok := ast.Unparen(lhs).(*ast.SelectorExpr)
		if !ok {
			continue
		}
		if v, ok := c.pass.TypesInfo.ObjectOf(sel.Sel).(*types.Var); ok && v.IsField() {
			c.freshField(v, s, lhs)
		}
	}
}

// checkFieldLit reports a fresh descriptor in a composite literal of the
// package's structs (check fd-field).
func (c *checker) checkFieldLit(u *unit, lit *ast.CompositeLit) {
	info := c.pass.TypesInfo
	st, ok := info.TypeOf(lit).Underlying().(*types.Struct)
	if !ok {
		return
	}
	for i, el := range lit.Elts {
		var v *types.Var
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			key, ok := kv.Key.(*ast.Ident)
			if !ok {
				continue
			}
			v, _ = info.Uses[key].(*types.Var)
			el = kv.Value
		} else if i < st.NumFields() {
			v = st.Field(i)
		}
		if v != nil {
			c.freshField(v, u.sourceOf(el), el)
		}
	}
}

func (c *checker) freshField(v *types.Var, s source, at ast.Node) {
	fs := c.fields[v]
	if fs == nil || fs.abi || fs.reported || s&(srcFresh|srcFreshSlice) == 0 {
		return
	}
	fs.reported = true
	c.report(CatFdField, at, nil,
		"field %s stores a freshly created descriptor as a bare number: nothing owns it, so it can be closed twice, "+
			"leaked, or used after the number was reused; wrap it with os.NewFile at once and store the *os.File",
		v.Name())
}

// looksLikeFdName reports whether a field name names a descriptor (fd, Fd,
// FD, sockFd, memFD, pidfd, nfd, fds, …) and not, for a scalar field, a count
// or limit (nfds, maxFd, numFDs).
func looksLikeFdName(name string, t types.Type) bool {
	base := strings.ReplaceAll(name, "_", "")
	for _, plural := range []string{"fds", "Fds", "FDs", "FDS"} {
		if strings.HasSuffix(base, plural) {
			base = base[:len(base)-1]
			break
		}
	}
	if !strings.HasSuffix(base, "fd") && !strings.HasSuffix(base, "Fd") && !strings.HasSuffix(base, "FD") {
		return false
	}
	if _, ok := t.Underlying().(*types.Basic); !ok {
		return true // a slice or array of them
	}
	lower := strings.ToLower(name)
	if lower == "nfds" || lower == "nrfds" {
		return false
	}
	for _, p := range []string{"num", "max", "min", "cnt", "count", "total"} {
		if strings.HasPrefix(lower, p) {
			return false
		}
	}
	return true
}

// isBareFdType reports whether t is int, int32 or uintptr (or a named type,
// slice or array of one).
func isBareFdType(t types.Type) bool {
	switch u := t.Underlying().(type) {
	case *types.Slice:
		t = u.Elem()
	case *types.Array:
		t = u.Elem()
	}
	b, ok := t.Underlying().(*types.Basic)
	if !ok {
		return false
	}
	switch b.Kind() {
	case types.Int, types.Int32, types.Uintptr:
		return true
	}
	return false
}

// isABIStruct reports whether st has at least two fields and is made only
// of fixed-size integers: a mirror of a kernel structure (pollfd,
// epoll_event, a cmsg header), whose descriptor fields are no ownership.
func isABIStruct(st *types.Struct) bool {
	if st.NumFields() < 2 {
		return false
	}
	var fixed func(t types.Type) bool
	fixed = func(t types.Type) bool {
		switch u := t.Underlying().(type) {
		case *types.Basic:
			switch u.Kind() {
			case types.Int8, types.Int16, types.Int32, types.Int64,
				types.Uint8, types.Uint16, types.Uint32, types.Uint64:
				return true
			}
		case *types.Array:
			return fixed(u.Elem())
		case *types.Struct:
			for i := range u.NumFields() {
				if !fixed(u.Field(i).Type()) {
					return false
				}
			}
			return true
		}
		return false
	}
	return fixed(st)
}

// hasPIDField reports whether st has an integer field named pid (any case).
func hasPIDField(st *types.Struct) bool {
	for i := range st.NumFields() {
		f := st.Field(i)
		if strings.EqualFold(f.Name(), "pid") {
			if b, ok := f.Type().Underlying().(*types.Basic); ok && b.Info()&types.IsInteger != 0 {
				return true
			}
		}
	}
	return false
}
