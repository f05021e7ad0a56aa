package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"strings"
	"testing"
)

// readAll reads every record of in, collecting malformed ones apart.
func readAll(t testing.TB, in []byte, comma rune) (recs []*csvRecord, bom bool, bad []*rowError, fatal error) {
	t.Helper()
	r, err := newCSVReader(bytes.NewReader(in), comma)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := r.read()
		var re *rowError
		switch {
		case errors.Is(err, io.EOF):
			return recs, r.bom, bad, nil
		case errors.As(err, &re):
			bad = append(bad, re)
		case err != nil:
			return recs, r.bom, bad, err
		default:
			recs = append(recs, rec)
		}
	}
}

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   [][]string // exact field values per record
		lines  []int
		quoted [][]bool
		bad    []int // lines of malformed records
	}{
		{"plain LF", "a,b\n1,2\n", [][]string{{"a", "b"}, {"1", "2"}}, []int{1, 2}, nil, nil},
		{"CRLF, no final newline", "a,b\r\n1,2", [][]string{{"a", "b"}, {"1", "2"}}, []int{1, 2}, nil, nil},
		{"BOM", "\xef\xbb\xbfemail,id\r\nx@example.org,1\r\n", [][]string{{"email", "id"}, {"x@example.org", "1"}}, []int{1, 2}, nil, nil},
		{"quoted with comma and quote", "a,b\n\"Dupont, Anne\",\"say \"\"hi\"\"\"\n",
			[][]string{{"a", "b"}, {"Dupont, Anne", `say "hi"`}}, []int{1, 2}, [][]bool{{false, false}, {true, true}}, nil},
		{"embedded CRLF kept", "a,b\r\n\"line1\r\nline2\",x\r\n", [][]string{{"a", "b"}, {"line1\r\nline2", "x"}}, []int{1, 2}, nil, nil},
		{"embedded LF in CRLF file", "a,b\r\n\"line1\nline2\",x\r\n", [][]string{{"a", "b"}, {"line1\nline2", "x"}}, []int{1, 2}, nil, nil},
		{"accents and empty fields", "nom,tel\nÉloïse Ñúñez,\n,\"\"\n", [][]string{{"nom", "tel"}, {"Éloïse Ñúñez", ""}, {"", ""}}, []int{1, 2, 3}, nil, nil},
		{"blank lines", "a,b\n\n1,2\n\n", [][]string{{"a", "b"}, {"1", "2"}, nil}, []int{1, 3, 4}, nil, nil},
		{"bare quote", "a,b\n1,x\"y\n3,4\n", [][]string{{"a", "b"}, {"3", "4"}}, []int{1, 3}, nil, []int{2}},
		{"wrong field count", "a,b\n1,2,3\n3,4\n", [][]string{{"a", "b"}, {"3", "4"}}, []int{1, 3}, nil, []int{2}},
		{"multi-line record then error", "a,b\n\"x\ny\",1\n\"bad\"x,2\n5,6\n", [][]string{{"a", "b"}, {"x\ny", "1"}, {"5", "6"}}, []int{1, 2, 5}, nil, []int{4}},
		{"unterminated quote", "a,b\n1,\"open\n2,3\n", [][]string{{"a", "b"}}, []int{1}, nil, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, _, bad, err := readAll(t, []byte(tt.in), ',')
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			var lines []int
			for _, r := range recs {
				var fs []string
				for i := range r.spans {
					fs = append(fs, r.field(i))
				}
				got = append(got, fs)
				lines = append(lines, r.line)
			}
			if !equal2(got, tt.want) {
				t.Errorf("fields = %q, want %q", got, tt.want)
			}
			if !equalInts(lines, tt.lines) {
				t.Errorf("lines = %v, want %v", lines, tt.lines)
			}
			var badLines []int
			for _, b := range bad {
				badLines = append(badLines, b.line)
			}
			if !equalInts(badLines, tt.bad) {
				t.Errorf("malformed lines = %v, want %v", badLines, tt.bad)
			}
			for i, q := range tt.quoted {
				for j, want := range q {
					if recs[i].quoted(j) != want {
						t.Errorf("record %d field %d quoted = %v", i, j, !want)
					}
				}
			}
			if len(bad) == 0 {
				checkRoundTrip(t, []byte(tt.in), ',')
			}
		})
	}
}

// A malformed record's error names its line and never its content.
func TestReadCSVErrorsHoldNoContent(t *testing.T) {
	_, _, bad, err := readAll(t, []byte("email\nanne\"secret@example.org\n"), ',')
	if err != nil || len(bad) != 1 {
		t.Fatalf("bad = %v, err = %v", bad, err)
	}
	if msg := bad[0].Error(); !strings.HasPrefix(msg, "line 2: ") || strings.Contains(msg, "secret") {
		t.Errorf("error %q: want the line number and no content", msg)
	}
}

func TestReadCSVRecordTooBig(t *testing.T) {
	in := "a\n\"" + strings.Repeat("x", maxRecordBytes+10) + "\n"
	_, _, _, err := readAll(t, []byte(in), ',')
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v, want the oversized record refused by line", err)
	}
}

func TestRewriteKeepsQuotingAndBytes(t *testing.T) {
	in := "id;email;nom\r\n1;\"anne@example.org\";\" Anne \"\"A\"\"\"\r\n2; b@example.org ;Bob\r\n"
	recs, _, _, err := readAll(t, []byte(in), ';')
	if err != nil || len(recs) != 3 {
		t.Fatal(recs, err)
	}
	tests := []struct {
		rec  int
		repl map[int]string
		want string
	}{
		{1, map[int]string{1: "tok_1", 2: "tok_2"}, "1;\"tok_1\";\"tok_2\"\r\n"},
		{2, map[int]string{1: "tok_3"}, "2;tok_3;Bob\r\n"},
		{2, map[int]string{2: "needs;quote"}, "2; b@example.org ;\"needs;quote\"\r\n"},
		{2, map[int]string{2: " leading space"}, "2; b@example.org ; leading space\r\n"},
		{1, map[int]string{2: `say "hi"`}, "1;\"anne@example.org\";\"say \"\"hi\"\"\"\r\n"},
	}
	for _, tt := range tests {
		if got := string(recs[tt.rec].rewrite(';', tt.repl)); got != tt.want {
			t.Errorf("rewrite %v = %q, want %q", tt.repl, got, tt.want)
		}
	}
	if v := recs[1].field(2); v != ` Anne "A"` {
		t.Errorf("field = %q", v)
	}
}

// checkRoundTrip checks the properties the CSV commands rely on, against
// encoding/csv itself:
//   - the BOM and the records' bytes, concatenated, are the input;
//   - each field's exact value, with "\r\n" read as "\n", is what
//     encoding/csv reads;
//   - rewriting fields with their own value changes nothing, and with
//     new values reads back as those values.
func checkRoundTrip(t *testing.T, in []byte, comma rune) {
	t.Helper()
	recs, bom, bad, err := readAll(t, in, comma)
	if err != nil || len(bad) > 0 {
		return
	}
	var joined []byte
	if bom {
		joined = append(joined, utf8BOM...)
	}
	for _, r := range recs {
		joined = append(joined, r.raw...)
	}
	if !bytes.Equal(joined, in) {
		t.Fatalf("records' bytes do not add up to the input:\n got %q\nwant %q", joined, in)
	}
	ref := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(in, utf8BOM)))
	ref.Comma = comma
	ref.FieldsPerRecord = -1
	i := 0
	for _, r := range recs {
		if len(r.spans) == 0 {
			continue // trailing blank lines
		}
		want, err := ref.Read()
		if err != nil {
			t.Fatalf("encoding/csv: %v", err)
		}
		if len(want) != len(r.spans) {
			t.Fatalf("record %d: %d fields, encoding/csv reads %d", i, len(r.spans), len(want))
		}
		orig := map[int]string{}
		toks := map[int]string{}
		fresh := map[int]string{}
		for j := range want {
			got := r.field(j)
			if n := strings.ReplaceAll(got, "\r\n", "\n"); n != want[j] {
				t.Fatalf("record %d field %d = %q, encoding/csv reads %q", i, j, got, want[j])
			}
			orig[j] = got
			toks[j] = "tok_" + string(rune('a'+j%26))
			fresh[j] = "v\"" + string(rune('a'+j%26)) + "\r\n,;\r"
		}
		if out := r.rewrite(comma, orig); !bytes.Equal(out, r.raw) {
			t.Fatalf("record %d rewritten with its own values: %q, was %q", i, out, r.raw)
		}
		// New values read back as themselves.
		back := readOne(t, r.rewrite(comma, fresh), comma)
		for j := range want {
			if got := back.field(j); got != fresh[j] {
				t.Fatalf("record %d field %d rewritten reads back %q, want %q", i, j, got, fresh[j])
			}
		}
		// Tokens in, values back: the record's bytes again (the round trip
		// of csv tokenize and csv detokenize). The one exception is an
		// unquoted last field ending in "\r" before a final "\r", which
		// only reads back because of that final "\r".
		tokenized := readOne(t, r.rewrite(comma, toks), comma)
		last := len(want) - 1
		odd := !r.quoted(last) && strings.HasSuffix(orig[last], "\r")
		if out := tokenized.rewrite(comma, orig); !bytes.Equal(out, r.raw) && !odd {
			t.Fatalf("record %d tokenized and back: %q, was %q", i, out, r.raw)
		}
		i++
	}
	if _, err := ref.Read(); !errors.Is(err, io.EOF) {
		t.Fatalf("encoding/csv reads more records than csvReader: %v", err)
	}
}

// FuzzReadCSV checks the reader against encoding/csv on any input: it
// never panics, and on well-formed input its records' bytes add up to the
// input, its values are encoding/csv's, and rewriting is exact.
func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"a,b\n1,2\n",
		"\xef\xbb\xbfemail,tel\r\n\"x@example.org\",\"+33 6\"\r\n",
		"a\r\n\"multi\r\nline\",\r\n",
		"a,b\n\n\n1,\"\"\n",
		"a,b\n\"x\"\"y\",z",
		"a,b\r",
		"a,b\n1,x\"y\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, semicolon bool) {
		comma := ','
		if semicolon {
			comma = ';'
		}
		readAll(t, in, comma)
		checkRoundTrip(t, in, comma)
	})
}

// readOne reads the one record in b.
func readOne(t *testing.T, b []byte, comma rune) *csvRecord {
	t.Helper()
	recs, _, bad, err := readAll(t, b, comma)
	if err != nil || len(bad) > 0 || len(recs) == 0 || len(recs[0].spans) == 0 {
		t.Fatalf("%q does not read back as one record: %v %v", b, bad, err)
	}
	return recs[0]
}

func equal2(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") || len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
