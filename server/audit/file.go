package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File is what the log needs of a file it writes. *os.File implements it.
type File interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	// Stat identifies the open file (device and inode), so that the log
	// notices when another file takes its place.
	Stat() (os.FileInfo, error)
	Close() error
}

// OpenFileFunc opens a file the log writes, like os.OpenFile.
type OpenFileFunc func(name string, flag int, perm os.FileMode) (File, error)

func osOpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}

// syncDir makes the directory's entries (new files, renames) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// listFiles returns the log files in dir, sorted by number. Other names
// are ignored.
func listFiles(dir string) ([]fileRef, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var refs []fileRef
	for _, e := range entries {
		if n, ok := parseFileName(e.Name()); ok && e.Type().IsRegular() {
			refs = append(refs, fileRef{path: filepath.Join(dir, e.Name()), num: n})
		}
	}
	sortRefs(refs)
	return refs, nil
}

// Files returns the paths of the log files in dir, in chain order: the
// files Verify takes for a whole directory. A missing dir has none.
func Files(dir string) ([]string, error) {
	refs, err := listFiles(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	files := make([]string, 0, len(refs))
	for _, r := range refs {
		files = append(files, r.path)
	}
	return files, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
