package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Format version 2. Changing any byte of what is hashed, or of how a line is
// laid out, needs a new version. Version 1 chained records by HMAC under a
// key every verifier had to hold, so every verifier could forge; it is not
// read any more.
const (
	formatVersion = 2

	// chainDomain prefixes every chain hash. tokenDomain prefixes the keyed
	// token hash; the two never share a key or an input.
	chainDomain = "jeton/audit/v2\x00"
	tokenDomain = "jeton/audit/token\x00"

	// KeySize is the length of the token-hash key in bytes.
	KeySize = 32

	hashSize = sha256.Size
)

// chainHasher computes record hashes without allocating: it reuses its
// hash state and its buffer for the bytes before the record.
type chainHasher struct {
	h   hash.Hash
	buf []byte
}

func newChainHasher() *chainHasher { return &chainHasher{h: sha256.New(), buf: make([]byte, 0, 128)} }

var closeBrace = []byte{'}'}

// sum computes the hash of record seq:
// SHA-256("jeton/audit/v2\x00" || prev || {"v":2,"seq":N,"rec":REC}),
// with prev the raw 32 bytes of the previous record's hash (zeros for the
// first record of a chain). It is unkeyed: anyone can recompute the chain,
// and only a signed checkpoint of its head makes it binding.
func (c *chainHasher) sum(prev *[hashSize]byte, seq uint64, rec []byte) [hashSize]byte {
	b := append(c.buf[:0], chainDomain...)
	b = append(b, prev[:]...)
	b = appendBodyStart(b, seq)
	c.buf = b
	c.h.Reset()
	c.h.Write(b)
	c.h.Write(rec)
	c.h.Write(closeBrace)
	var out [hashSize]byte
	c.h.Sum(out[:0])
	return out
}

// appendBodyStart appends `{"v":2,"seq":N,"rec":`, the part of the hashed
// body before the record.
func appendBodyStart(dst []byte, seq uint64) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, formatVersion, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, `,"rec":`...)
}

// appendLine appends one log line, newline included:
// {"v":2,"seq":N,"prev":"HEX","rec":REC,"hash":"HEX"}
// The layout is fixed so that a verifier can demand byte equality with the
// canonical form: any edit then shows up, even one JSON would not notice.
func appendLine(dst []byte, seq uint64, prev, sum *[hashSize]byte, rec []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, formatVersion, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"prev":"`...)
	dst = hex.AppendEncode(dst, prev[:])
	dst = append(dst, `","rec":`...)
	dst = append(dst, rec...)
	dst = append(dst, `,"hash":"`...)
	dst = hex.AppendEncode(dst, sum[:])
	return append(dst, "\"}\n"...)
}

// line is one parsed log line.
type line struct {
	seq  uint64
	prev [hashSize]byte
	rec  []byte // aliases the input
	hash [hashSize]byte
}

const (
	linePrefix = `{"v":2,"seq":`
	lineSuffix = `"}`
	// `,"hash":"` + 64 hex digits + `"}`
	hashTailLen = len(`,"hash":"`) + 2*hashSize + len(lineSuffix)
)

// parseLine parses b, a line without its newline. It accepts only the exact
// bytes appendLine would produce and says why not otherwise. It reads the
// fixed layout directly rather than through encoding/json, since start-up
// verifies the whole log with it; the record itself is checked to be a
// JSON object by its braces only, the chain hash covering its bytes.
func parseLine(b []byte) (line, string) {
	var l line
	rest, ok := bytes.CutPrefix(b, []byte(linePrefix))
	if !ok {
		if bytes.HasPrefix(b, []byte(`{"v":1,`)) {
			return l, "format version 1 (keyed chain), which this version does not read"
		}
		return l, "not a version 2 record line"
	}
	i := 0
	var seq uint64
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		d := uint64(rest[i] - '0')
		if seq > (1<<64-1-d)/10 {
			return l, "bad seq"
		}
		seq = seq*10 + d
		i++
	}
	if i == 0 || rest[0] == '0' {
		return l, "bad seq"
	}
	l.seq = seq
	rest, ok = bytes.CutPrefix(rest[i:], []byte(`,"prev":"`))
	if !ok || len(rest) < 2*hashSize || !decodeHash(&l.prev, rest[:2*hashSize]) {
		return l, "prev is not 64 lowercase hex digits"
	}
	rest, ok = bytes.CutPrefix(rest[2*hashSize:], []byte(`","rec":`))
	if !ok || len(rest) < hashTailLen+2 {
		return l, "not in canonical form"
	}
	tail := rest[len(rest)-hashTailLen:]
	hexHash, ok := bytes.CutPrefix(tail, []byte(`,"hash":"`))
	if !ok || !bytes.HasSuffix(hexHash, []byte(lineSuffix)) || !decodeHash(&l.hash, hexHash[:2*hashSize]) {
		return l, "hash is not 64 lowercase hex digits"
	}
	l.rec = rest[:len(rest)-hashTailLen]
	if l.rec[0] != '{' || l.rec[len(l.rec)-1] != '}' {
		return l, "record is not a JSON object"
	}
	return l, ""
}

func decodeHash(dst *[hashSize]byte, s []byte) bool {
	if len(s) != 2*hashSize {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst[:], s)
	return err == nil
}

// fileName returns the name of log file number n.
func fileName(n uint64) string { return fmt.Sprintf("audit-%06d.jsonl", n) }

// parseFileName returns the number of a log file name, which must be as
// fileName produces it.
func parseFileName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, "audit-")
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, ".jsonl"); !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 || fileName(n) != name {
		return 0, false
	}
	return n, true
}
