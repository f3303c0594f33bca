//go:build unix

package cli

import (
	"os"
	"syscall"
)

// fileOwner returns the uid and gid of a file.
func fileOwner(fi os.FileInfo) (uid, gid uint32) {
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}
