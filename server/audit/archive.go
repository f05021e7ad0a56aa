package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// newChainName is the request Archive leaves in the audit directory: the
// next Open starts a new chain whose first record names the anchor's last
// checkpoint of the old one.
const newChainName = "NEW-CHAIN"

// archivedDir holds archived chains, one directory each, inside the audit
// directory (the same volume, so moving is a rename).
const archivedDir = "archived"

type newChainRequest struct {
	Archive string    `json:"archive"` // relative to the audit directory
	Reason  string    `json:"reason"`
	Time    time.Time `json:"time"`
}

func readNewChainRequest(dir string) (*newChainRequest, error) {
	b, err := os.ReadFile(filepath.Join(dir, newChainName))
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var r newChainRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("audit: %s is not a request written by jeton audit archive: %w", filepath.Join(dir, newChainName), err)
	}
	// The new chain names the archive so that a verifier checks the old
	// chain there; a request naming any other place (the directory
	// itself, outside it, a file) would send the verifier elsewhere.
	parts := strings.Split(r.Archive, "/")
	if len(parts) != 2 || parts[0] != archivedDir || !filepath.IsLocal(r.Archive) || filepath.Clean(r.Archive) != r.Archive {
		return nil, fmt.Errorf("audit: %s names %q, not a directory %s/<time> made by jeton audit archive; remove it and run jeton audit archive --dir %s",
			filepath.Join(dir, newChainName), r.Archive, archivedDir, dir)
	}
	if st, err := os.Lstat(filepath.Join(dir, r.Archive)); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("audit: %s names the archive %s, which is not a directory there; remove it and run jeton audit archive --dir %s",
			filepath.Join(dir, newChainName), r.Archive, dir)
	}
	if strings.TrimSpace(r.Reason) == "" {
		return nil, fmt.Errorf("audit: %s gives no reason; remove it and run jeton audit archive --dir %s", filepath.Join(dir, newChainName), dir)
	}
	return &r, nil
}

// ArchiveResult says what Archive did.
type ArchiveResult struct {
	// Dir is where the files went, relative to the audit directory.
	Dir   string
	Files int
}

// Archive is the operator's recovery for a log jetond refuses or has
// stopped writing (damaged, behind its checkpoint, replaced, lost). With
// jetond stopped, it moves every log file of dir into
// dir/archived/<UTC time>/, untouched, and leaves a request so that the
// next start of jetond opens a new chain whose first record names the
// anchor's last checkpoint of the old chain, with reason and the archive's
// place. The break is thus itself on record and anchored: a verifier sees
// it and checks the archive against that checkpoint.
//
// It fails if jetond has the directory open, and if reason is blank.
func Archive(dir, reason string, now time.Time) (*ArchiveResult, error) {
	return archive(dir, reason, now, osOpenFile)
}

// archive is Archive with its file seam: open writes the request and
// makes the directory entries durable.
func archive(dir, reason string, now time.Time, open OpenFileFunc) (*ArchiveResult, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, errors.New("audit: archive: give a reason; it is written into the new chain")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("audit: archive: %s is not a directory", dir)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (stop jetond first)", err)
	}
	defer unlock()
	if r, err := readNewChainRequest(dir); err != nil {
		return nil, err
	} else if r != nil {
		return nil, fmt.Errorf("audit: archive: %s already asks for a new chain (archive %s); start jetond to act on it", filepath.Join(dir, newChainName), r.Archive)
	}
	refs, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	rel, err := newArchiveDir(dir, now)
	if err != nil {
		return nil, err
	}
	dst := filepath.Join(dir, rel)
	for _, r := range refs {
		if err := os.Rename(r.path, filepath.Join(dst, filepath.Base(r.path))); err != nil {
			return nil, fmt.Errorf("audit: archive: %w", err)
		}
	}
	b, err := json.Marshal(newChainRequest{Archive: rel, Reason: reason, Time: now.UTC()})
	if err != nil {
		return nil, err
	}
	// The request's content is made durable before its name: after a power
	// loss there is either no request or a whole one, never an empty file
	// that blocks both jetond and a second archive.
	if err := writeDurable(filepath.Join(dir, newChainName), b, open); err != nil {
		return nil, fmt.Errorf("audit: archive: %w", err)
	}
	// The renames and the request become durable together, in the
	// directories they changed.
	for _, d := range []string{dst, filepath.Join(dir, archivedDir), dir} {
		if err := syncDir(d, open); err != nil {
			return nil, fmt.Errorf("audit: archive: %w", err)
		}
	}
	return &ArchiveResult{Dir: rel, Files: len(refs)}, nil
}

// newArchiveDir creates an archive directory of its own under
// dir/archived, named by now's UTC time to the second, with a suffix (-2,
// -3, ...) when that name is taken: a clock that repeats or steps back, or
// two breaks within a second, must never move a chain's files into an
// earlier archive, where they would replace that chain's files.
func newArchiveDir(dir string, now time.Time) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, archivedDir), 0o700); err != nil {
		return "", fmt.Errorf("audit: archive: %w", err)
	}
	// Slash-separated on every system: the name is written into the new
	// chain's first record, which verifiers read anywhere.
	base := archivedDir + "/" + now.UTC().Format("20060102T150405Z")
	for n := 1; ; n++ {
		rel := base
		if n > 1 {
			rel = fmt.Sprintf("%s-%d", base, n)
		}
		err := os.Mkdir(filepath.Join(dir, rel), 0o700)
		if err == nil {
			return rel, nil
		}
		if !errors.Is(err, fs.ErrExist) || n >= maxArchivesPerName {
			return "", fmt.Errorf("audit: archive: %w", err)
		}
	}
}

// maxArchivesPerName bounds the suffixes tried for one time stamp.
const maxArchivesPerName = 1000

// writeDurable creates path (it must not exist) holding b, fsynced. The
// caller syncs the directory.
func writeDurable(path string, b []byte, open OpenFileFunc) error {
	f, err := open(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
