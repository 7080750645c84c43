package iosafety

import (
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"

	"golang.org/x/tools/go/types/typeutil"
)

const (
	pkgUnix    = "golang.org/x/sys/unix"
	pkgSyscall = "syscall"
)

// freshFuncs are the unix and syscall functions whose first result is a
// descriptor the caller now owns.
var freshFuncs = map[string]bool{
	"Accept": true, "Accept4": true, "Creat": true, "Dup": true,
	"EpollCreate": true, "EpollCreate1": true, "Eventfd": true,
	"FanotifyInit": true, "Fsmount": true, "Fsopen": true, "Fspick": true,
	"InotifyInit": true, "InotifyInit1": true, "MemfdCreate": true,
	"MemfdSecret": true, "Open": true, "OpenByHandleAt": true,
	"OpenTree": true, "Openat": true, "Openat2": true, "PerfEventOpen": true,
	"PidfdGetfd": true, "PidfdOpen": true, "Signalfd": true, "Socket": true,
	"TimerfdCreate": true,
}

// offsetIO are the unix and syscall functions that read or move the file
// offset of their first argument.
var offsetIO = map[string]bool{
	"Read": true, "Write": true, "Seek": true, "Readv": true, "Writev": true,
}

// offsetMethods are the *os.File methods that read or move the offset.
var offsetMethods = map[string]bool{
	"Read": true, "Write": true, "Seek": true, "ReadFrom": true,
	"WriteString": true, "WriteTo": true,
}

// sysFunc returns the name and package of a package-level function of
// golang.org/x/sys/unix or syscall called by call.
func sysFunc(info *types.Info, call *ast.CallExpr) (string, *types.Package) {
	fn, ok := typeutil.Callee(info, call).(*types.Func)
	if !ok || fn.Pkg() == nil || fn.Signature().Recv() != nil {
		return "", nil
	}
	if p := fn.Pkg().Path(); p != pkgUnix && p != pkgSyscall {
		return "", nil
	}
	return fn.Name(), fn.Pkg()
}

// isPkgFunc reports whether call calls the package-level function path.name.
func isPkgFunc(info *types.Info, call *ast.CallExpr, path, name string) bool {
	fn, ok := typeutil.Callee(info, call).(*types.Func)
	return ok && fn.Pkg() != nil && fn.Pkg().Path() == path && fn.Name() == name &&
		fn.Signature().Recv() == nil
}

// method returns the method called by call and the package and name of its
// receiver's named type (after dereferencing), or nil.
func method(info *types.Info, call *ast.CallExpr) (*types.Func, string, string) {
	fn, ok := typeutil.Callee(info, call).(*types.Func)
	if !ok {
		return nil, "", ""
	}
	recv := fn.Signature().Recv()
	if recv == nil {
		return nil, "", ""
	}
	t := recv.Type()
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	named, ok := types.Unalias(t).(*types.Named)
	if !ok || named.Obj().Pkg() == nil {
		return fn, "", ""
	}
	return fn, named.Obj().Pkg().Path(), named.Obj().Name()
}

// isFdCall reports whether call is (*os.File).Fd().
func isFdCall(info *types.Info, call *ast.CallExpr) bool {
	fn, pkg, typ := method(info, call)
	return fn != nil && pkg == "os" && typ == "File" && fn.Name() == "Fd"
}

// isOSFileMethod reports whether call calls the *os.File method name.
func isOSFileMethod(info *types.Info, call *ast.CallExpr) (string, bool) {
	fn, pkg, typ := method(info, call)
	if fn == nil || pkg != "os" || typ != "File" {
		return "", false
	}
	return fn.Name(), true
}

// isNetFileCall reports whether call is File() of a net connection or
// listener, which dups the descriptor into a new *os.File.
func isNetFileCall(info *types.Info, call *ast.CallExpr) bool {
	fn, pkg, _ := method(info, call)
	if fn == nil || pkg != "net" || fn.Name() != "File" {
		return false
	}
	res := fn.Signature().Results()
	return res.Len() == 2 && isOSFilePtr(res.At(0).Type())
}

func isOSFilePtr(t types.Type) bool {
	p, ok := t.(*types.Pointer)
	if !ok {
		return false
	}
	n, ok := types.Unalias(p.Elem()).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "os" && n.Obj().Name() == "File"
}

// isStdStream reports whether e is os.Stdin, os.Stdout or os.Stderr.
func isStdStream(info *types.Info, e ast.Expr) bool {
	sel, ok := ast.Unparen(e).(*ast.SelectorExpr)
	if !ok {
		return false
	}
	v, ok := info.Uses[sel.Sel].(*types.Var)
	if !ok || v.Pkg() == nil || v.Pkg().Path() != "os" {
		return false
	}
	switch v.Name() {
	case "Stdin", "Stdout", "Stderr":
		return true
	}
	return false
}

// borrowCallback recognizes rc.Control(func(fd uintptr){…}), rc.Read and
// rc.Write of a syscall.RawConn, or of any method with that shape, and a
// Control method whose callback takes the descriptor as an int or uintptr
// first parameter. It returns the callback literal and its descriptor
// parameter (nil when unnamed).
func borrowCallback(info *types.Info, call *ast.CallExpr) (*ast.FuncLit, *types.Var, string) {
	fn, ok := typeutil.Callee(info, call).(*types.Func)
	if !ok || len(call.Args) != 1 {
		return nil, nil, ""
	}
	sig := fn.Signature()
	if sig.Recv() == nil || sig.Params().Len() != 1 {
		return nil, nil, ""
	}
	cb, ok := sig.Params().At(0).Type().Underlying().(*types.Signature)
	if !ok || cb.Params().Len() < 1 {
		return nil, nil, ""
	}
	first := cb.Params().At(0).Type()
	switch fn.Name() {
	case "Control":
		if !isBasic(first, types.Uintptr) && !isBasic(first, types.Int) {
			return nil, nil, ""
		}
	case "Read", "Write":
		if cb.Params().Len() != 1 || !isBasic(first, types.Uintptr) ||
			cb.Results().Len() != 1 || !isBasic(cb.Results().At(0).Type(), types.Bool) {
			return nil, nil, ""
		}
	default:
		return nil, nil, ""
	}
	lit, ok := ast.Unparen(call.Args[0]).(*ast.FuncLit)
	if !ok {
		return nil, nil, ""
	}
	var param *types.Var
	if ps := lit.Type.Params.List; len(ps) > 0 && len(ps[0].Names) > 0 {
		param, _ = info.Defs[ps[0].Names[0]].(*types.Var)
	}
	return lit, param, fn.Name()
}

func isBasic(t types.Type, k types.BasicKind) bool {
	b, ok := t.Underlying().(*types.Basic)
	return ok && b.Kind() == k
}

// pkgConst returns the value of the integer constant name of pkg.
func pkgConst(pkg *types.Package, name string) (constant.Value, bool) {
	c, ok := pkg.Scope().Lookup(name).(*types.Const)
	if !ok {
		return nil, false
	}
	return c.Val(), true
}

// constArg returns the constant value of e, if it has one.
func constArg(info *types.Info, e ast.Expr) (constant.Value, bool) {
	tv, ok := info.Types[e]
	if !ok || tv.Value == nil || tv.Value.Kind() != constant.Int {
		return nil, false
	}
	return tv.Value, true
}

// constIs reports whether e is a constant equal to one of pkg's constants
// names.
func constIs(info *types.Info, pkg *types.Package, e ast.Expr, names ...string) bool {
	v, ok := constArg(info, e)
	if !ok {
		return false
	}
	for _, n := range names {
		if c, ok := pkgConst(pkg, n); ok && constant.Compare(v, token.EQL, c) {
			return true
		}
	}
	return false
}
