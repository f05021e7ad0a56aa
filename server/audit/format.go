package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Format version 1. Changing any byte of what is MACed, or of how a line is
// laid out, needs a new version so that old logs keep verifying.
const (
	formatVersion = 1

	// Domain prefixes keep the three uses of the one key apart. They differ
	// within their first 13 bytes, so no input to one can collide with an
	// input to another.
	chainDomain = "jeton/audit/v1"
	tokenDomain = "jeton/audit/token\x00"
	headDomain  = "jeton/audit/head/v1\x00"

	// KeySize is the length of the MAC key in bytes.
	KeySize = 32

	macSize = sha256.Size

	headName = "HEAD"
)

// chainMAC computes the MAC of record seq:
// HMAC-SHA256(key, "jeton/audit/v1" || prev || {"v":1,"seq":N,"rec":REC}),
// with prev the raw 32 bytes of the previous record's MAC.
func chainMAC(h hash.Hash, prev *[macSize]byte, seq uint64, rec []byte) [macSize]byte {
	h.Reset()
	h.Write([]byte(chainDomain))
	h.Write(prev[:])
	var scratch [48]byte
	h.Write(appendBodyStart(scratch[:0], seq))
	h.Write(rec)
	h.Write([]byte{'}'})
	var out [macSize]byte
	h.Sum(out[:0])
	return out
}

// appendBodyStart appends `{"v":1,"seq":N,"rec":`, the part of the MACed body
// before the record.
func appendBodyStart(dst []byte, seq uint64) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, formatVersion, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, `,"rec":`...)
}

// appendLine appends one log line, newline included:
// {"v":1,"seq":N,"prev":"HEX","rec":REC,"mac":"HEX"}
// The layout is fixed so that a verifier can demand byte equality with the
// canonical form: any edit then shows up, even one JSON would not notice.
func appendLine(dst []byte, seq uint64, prev, mac *[macSize]byte, rec []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, formatVersion, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"prev":"`...)
	dst = hex.AppendEncode(dst, prev[:])
	dst = append(dst, `","rec":`...)
	dst = append(dst, rec...)
	dst = append(dst, `,"mac":"`...)
	dst = hex.AppendEncode(dst, mac[:])
	return append(dst, "\"}\n"...)
}

// line is one parsed log line.
type line struct {
	seq  uint64
	prev [macSize]byte
	rec  []byte
	mac  [macSize]byte
}

// wireLine is the JSON shape of a line, for parsing only.
type wireLine struct {
	V    int             `json:"v"`
	Seq  uint64          `json:"seq"`
	Prev string          `json:"prev"`
	Rec  json.RawMessage `json:"rec"`
	MAC  string          `json:"mac"`
}

// parseLine parses b, a line without its newline. It accepts only the exact
// bytes appendLine would produce; otherwise it says why not.
func parseLine(b []byte) (line, string) {
	var w wireLine
	if err := json.Unmarshal(b, &w); err != nil {
		return line{}, "invalid JSON"
	}
	if w.V != formatVersion {
		return line{}, fmt.Sprintf("unsupported format version %d", w.V)
	}
	var l line
	if !decodeMAC(&l.prev, w.Prev) || !decodeMAC(&l.mac, w.MAC) {
		return line{}, "prev or mac is not 64 lowercase hex digits"
	}
	l.seq, l.rec = w.Seq, w.Rec
	canon := appendLine(nil, l.seq, &l.prev, &l.mac, l.rec)
	if !bytes.Equal(canon[:len(canon)-1], b) {
		return line{}, "not in canonical form"
	}
	return l, ""
}

func decodeMAC(dst *[macSize]byte, s string) bool {
	if len(s) != 2*macSize || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err == nil
}

// head is the truncation anchor: the last durable record, as of the last
// group commit.
type head struct {
	seq  uint64
	mac  [macSize]byte
	file string // base name of the file holding record seq
}

// encodeHead returns the HEAD file's contents:
// {"v":1,"seq":N,"mac":"HEX","file":"NAME","hmac":"HEX"}
// with hmac = HMAC-SHA256(key, "jeton/audit/head/v1\x00" || the same object
// up to and excluding ,"hmac").
func encodeHead(key []byte, h head) []byte {
	body := headBody(h)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(headDomain))
	m.Write(body)
	b := append(body[:len(body)-1:len(body)-1], `,"hmac":"`...)
	b = hex.AppendEncode(b, m.Sum(nil))
	return append(b, "\"}\n"...)
}

func headBody(h head) []byte {
	b := []byte(`{"v":`)
	b = strconv.AppendInt(b, formatVersion, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, h.seq, 10)
	b = append(b, `,"mac":"`...)
	b = hex.AppendEncode(b, h.mac[:])
	b = append(b, `","file":`...)
	b = strconv.AppendQuote(b, h.file)
	return append(b, '}')
}

// parseHead parses and authenticates a HEAD file, or says what is wrong.
func parseHead(key, b []byte) (head, string) {
	var w struct {
		V    int    `json:"v"`
		Seq  uint64 `json:"seq"`
		MAC  string `json:"mac"`
		File string `json:"file"`
		HMAC string `json:"hmac"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return head{}, "invalid JSON"
	}
	if w.V != formatVersion {
		return head{}, fmt.Sprintf("unsupported format version %d", w.V)
	}
	h := head{seq: w.Seq, file: w.File}
	var sum [macSize]byte
	if !decodeMAC(&h.mac, w.MAC) || !decodeMAC(&sum, w.HMAC) {
		return head{}, "mac or hmac is not 64 lowercase hex digits"
	}
	if _, ok := parseFileName(h.file); !ok {
		return head{}, "file is not an audit file name"
	}
	if !bytes.Equal(encodeHead(key, h), b) {
		return head{}, "bad HMAC or not in canonical form"
	}
	return h, ""
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
