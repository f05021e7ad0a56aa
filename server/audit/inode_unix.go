//go:build unix

package audit

import (
	"fmt"
	"os"
	"syscall"
)

// inodes describes the opened and the current file for the log line that
// reports a replaced file.
func inodes(opened, now os.FileInfo) string {
	a, ok1 := opened.Sys().(*syscall.Stat_t)
	b, ok2 := now.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return "different files"
	}
	return fmt.Sprintf("opened device %d inode %d, now device %d inode %d", a.Dev, a.Ino, b.Dev, b.Ino)
}
