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

// syncDir makes the directory's entries (new files, renames) durable. It
// opens dir through open, the log's file seam (os.OpenFile opens a
// directory read-only as well).
func syncDir(dir string, open OpenFileFunc) error {
	d, err := open(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// mkdirDurable creates dir (0700) and any missing parent, and makes each
// new entry durable in its parent, so that a power loss cannot take away
// a directory whose log a checkpoint already covers.
func mkdirDurable(dir string, open OpenFileFunc) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent, open); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent, open)
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
