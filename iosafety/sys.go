package iosafety

import (
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"

	"golang.org/x/tools/go/analysis"
)

// checkNewFile reports os.NewFile of a number of unknown ownership
// (check newfile).
func (c *checker) checkNewFile(u *unit, call *ast.CallExpr) {
	if !isPkgFunc(c.pass.TypesInfo, call, "os", "NewFile") || len(call.Args) != 2 {
		return
	}
	s := u.sourceOf(call.Args[0])
	if !s.only(srcFdCall | srcBorrowed | srcField | srcGlobal | srcParam | srcLiteral) {
		return
	}
	var what string
	switch {
	case s&srcFdCall != 0:
		what = "the result of Fd(): the new File and the old one both own the descriptor and both close it; " +
			"dup it first (unix.Dup, F_DUPFD_CLOEXEC) or share the *os.File"
	case s&srcBorrowed != 0:
		what = "a descriptor borrowed in a Control callback: the new File and its owner both close it; " +
			"dup it first (unix.Dup, F_DUPFD_CLOEXEC)"
	case s&srcField != 0:
		what = "a number kept in a struct field: nothing shows this code owns it, and whoever stored it may close it too; " +
			"store the *os.File instead of the number"
	case s&srcGlobal != 0:
		what = "a number kept in a package-level variable: nothing shows this code owns it, and others may close it too; " +
			"keep an *os.File instead of the number"
	case s&srcParam != 0:
		what = "a parameter: the caller may still own and close it; take an *os.File, " +
			"or make callers pass a descriptor fresh from the call that created it"
	default:
		what = "a constant: nothing shows this process owns that number; adopt an inherited descriptor exactly once, " +
			"at startup (and mark it //iosafety:allow newfile)"
	}
	c.report(CatNewFile, call, nil, "os.NewFile on %s", what)
}

// checkClose reports closing a borrowed descriptor (check borrowed-close).
func (c *checker) checkClose(u *unit, call *ast.CallExpr) {
	name, pkg := sysFunc(c.pass.TypesInfo, call)
	var arg ast.Expr
	switch {
	case name == "Close" && len(call.Args) == 1:
		arg = call.Args[0]
	case (name == "Dup2" && len(call.Args) == 2) || (name == "Dup3" && len(call.Args) == 3):
		arg = call.Args[1]
	default:
		return
	}
	if !u.sourceOf(arg).only(srcBorrowed | srcFdCall) {
		return
	}
	if name == "Close" {
		c.report(CatBorrowedClose, call, nil,
			"%s.Close of a descriptor borrowed from an *os.File: the File still owns it and closes it again, "+
				"possibly after the number was reused by another open; close the *os.File instead", pkg.Name())
		return
	}
	c.report(CatBorrowedClose, call, nil,
		"%s.%s onto a descriptor borrowed from an *os.File closes it underneath the File, which goes on using "+
			"the number; dup onto a descriptor you own", pkg.Name(), name)
}

// checkSharedState reports offset I/O, status-flag changes and locks on a
// descriptor received with ParseUnixRights (check shared-state).
func (c *checker) checkSharedState(u *unit, call *ast.CallExpr) {
	info := c.pass.TypesInfo
	const shared = "the open file description, shared with the sender"
	if m, ok := isOSFileMethod(info, call); ok {
		sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr)
		if ok && offsetMethods[m] && u.sourceOf(sel.X)&srcRightsFile != 0 {
			c.report(CatSharedState, call, nil,
				"(*os.File).%s on a File made from a descriptor received with ParseUnixRights reads or moves the "+
					"file offset of %s; use ReadAt/WriteAt (pread/pwrite)", m, shared)
		}
		return
	}
	name, pkg := sysFunc(info, call)
	if pkg == nil || len(call.Args) == 0 || u.sourceOf(call.Args[0])&srcRights == 0 {
		return
	}
	q := pkg.Name()
	switch {
	case offsetIO[name]:
		c.report(CatSharedState, call, nil,
			"%s.%s on a descriptor received with ParseUnixRights reads or moves the file offset of %s; "+
				"use %s.Pread/Pwrite (or ReadAt/WriteAt on an *os.File)", q, name, shared, q)
	case name == "FcntlInt" && len(call.Args) == 3 && constIs(info, pkg, call.Args[1], "F_SETFL"),
		name == "SetNonblock":
		c.report(CatSharedState, call, nil,
			"%s.%s on a descriptor received with ParseUnixRights changes the status flags (O_NONBLOCK, O_APPEND, …) "+
				"of %s; leave them alone", q, name, shared)
	case name == "Flock",
		name == "FcntlFlock" && len(call.Args) == 3 && constIs(info, pkg, call.Args[1], "F_OFD_SETLK", "F_OFD_SETLKW"):
		c.report(CatSharedState, call, nil,
			"%s.%s on a descriptor received with ParseUnixRights takes a lock that belongs to %s; "+
				"leave locks alone", q, name, shared)
	}
}

// cloexecFlag names, for each descriptor-creating function of unix and
// syscall that takes flags, the flags argument and its close-on-exec flag.
var cloexecFlag = map[string]struct {
	arg  int
	flag string
}{
	"Accept4":        {1, "SOCK_CLOEXEC"},
	"Dup3":           {2, "O_CLOEXEC"},
	"EpollCreate1":   {0, "EPOLL_CLOEXEC"},
	"Eventfd":        {1, "EFD_CLOEXEC"},
	"InotifyInit1":   {0, "IN_CLOEXEC"},
	"MemfdCreate":    {1, "MFD_CLOEXEC"},
	"Open":           {1, "O_CLOEXEC"},
	"Openat":         {2, "O_CLOEXEC"},
	"Pipe2":          {1, "O_CLOEXEC"},
	"Recvmsg":        {3, "MSG_CMSG_CLOEXEC"},
	"RecvmsgBuffers": {3, "MSG_CMSG_CLOEXEC"},
	"Signalfd":       {2, "SFD_CLOEXEC"},
	"Socket":         {1, "SOCK_CLOEXEC"},
	"Socketpair":     {1, "SOCK_CLOEXEC"},
	"TimerfdCreate":  {1, "TFD_CLOEXEC"},
}

// checkCloexec reports Recvmsg, and the calls that create a descriptor,
// whose constant flags lack the close-on-exec flag, and fcntl F_DUPFD
// (check cloexec). Creation is not reported in a function that calls
// CloseOnExec: it sets the flag itself, usually under syscall.ForkLock.
func (c *checker) checkCloexec(u *unit, call *ast.CallExpr) {
	info := c.pass.TypesInfo
	name, pkg := sysFunc(info, call)
	if pkg == nil {
		return
	}
	qual := pkgQualifier(info, call)
	if name == "FcntlInt" && len(call.Args) == 3 && constIs(info, pkg, call.Args[1], "F_DUPFD") {
		if _, ok := pkgConst(pkg, "F_DUPFD_CLOEXEC"); !ok || u.setsCloexec() {
			return
		}
		var fixes []analysis.SuggestedFix
		if qual != "" {
			fixes = append(fixes, analysis.SuggestedFix{
				Message: "Use F_DUPFD_CLOEXEC",
				TextEdits: []analysis.TextEdit{{Pos: call.Args[1].Pos(), End: call.Args[1].End(),
					NewText: []byte(qual + ".F_DUPFD_CLOEXEC")}},
			})
		}
		c.report(CatCloexec, call.Args[1], fixes,
			"%s.FcntlInt F_DUPFD makes a descriptor without close-on-exec, inherited by every child process "+
				"started before it is closed; use %s.F_DUPFD_CLOEXEC", pkg.Name(), pkg.Name())
		return
	}
	cf, ok := cloexecFlag[name]
	if !ok || len(call.Args) <= cf.arg || call.Ellipsis.IsValid() {
		return
	}
	flags := call.Args[cf.arg]
	v, ok := constArg(info, flags)
	if !ok {
		return
	}
	cl, ok := pkgConst(pkg, cf.flag)
	if !ok || constant.Sign(constant.BinaryOp(v, token.AND, cl)) != 0 {
		return
	}
	recv := cf.flag == "MSG_CMSG_CLOEXEC"
	if !recv && u.setsCloexec() {
		return
	}
	var fixes []analysis.SuggestedFix
	if qual != "" {
		flag := qual + "." + cf.flag
		edit := analysis.TextEdit{Pos: flags.End(), End: flags.End(), NewText: []byte("|" + flag)}
		if constant.Sign(v) == 0 {
			edit = analysis.TextEdit{Pos: flags.Pos(), End: flags.End(), NewText: []byte(flag)}
		}
		fixes = append(fixes, analysis.SuggestedFix{
			Message:   "Add " + cf.flag + " to the flags",
			TextEdits: []analysis.TextEdit{edit},
		})
	}
	what := "the new descriptor is inherited by every child process started before it is closed"
	if recv {
		what = "descriptors received over SCM_RIGHTS are not close-on-exec and leak into every child process " +
			"started before they are closed"
	}
	c.report(CatCloexec, flags, fixes,
		"%s.%s without %s: %s; "+
			"add %s.%s to the flags", pkg.Name(), name, cf.flag, what, pkg.Name(), cf.flag)
}

// pkgQualifier returns the name by which call.Fun names its package, as in
// unix.Recvmsg, or "".
func pkgQualifier(info *types.Info, call *ast.CallExpr) string {
	if sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr); ok {
		if x, ok := sel.X.(*ast.Ident); ok {
			if _, ok := info.Uses[x].(*types.PkgName); ok {
				return x.Name
			}
		}
	}
	return ""
}
