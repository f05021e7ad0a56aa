package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
)

// shapedClassesYAML configures one class of each shape.
const shapedClassesYAML = `classes:
  - {name: email, normalize: [trim, fold, email], mask: email, shape: {type: email, domain: tokens.event.test}}
  - {name: badge, mask: last3, shape: {type: digits, prefix: "09", keep_suffix: 2}}
  - {name: card, mask: last3, shape: {type: digits, luhn_values: true}}
  - {name: arrival, mask: all, shape: {type: date, layout: "2006-01-02 15:04", from: 3000-01-01, to: 9999-12-31}}
  - {name: birth, mask: all, shape: {type: date, layout: "2006-01-02"}}
  - {name: text, mask: all}
`

// TestCheckConfigShapes: --check-config takes every shape's parameters
// from the YAML and refuses a bad shape, naming the class and the
// parameter, and the file.
func TestCheckConfigShapes(t *testing.T) {
	good, _ := validConfig(t)
	base, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, classes string) string {
		p := filepath.Join(t.TempDir(), "jetond.yaml")
		if err := os.WriteFile(p, append(append([]byte(nil), base...), classes...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write(t, shapedClassesYAML)
	if code, out, errOut := jetond(t, nil, "--check-config", p); code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("valid shapes: exit %d, %q %q", code, out, errOut)
	}
	c, err := LoadConfig(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	classes, err := c.classes()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]tokenizer.Shape{
		"email": {Kind: tokenizer.ShapeEmail, Domain: "tokens.event.test"},
		"badge": {Kind: tokenizer.ShapeDigits, Prefix: "09", KeepSuffix: 2},
		"card":  {Kind: tokenizer.ShapeDigits, LuhnValues: true},
		"text":  {},
	}
	for _, cl := range classes {
		if w, ok := want[cl.Name]; ok && cl.Shape != w {
			t.Errorf("class %s: shape %+v, want %+v", cl.Name, cl.Shape, w)
		}
		if cl.Name == "birth" && (cl.Shape.Layout != "2006-01-02" || !cl.Shape.From.IsZero()) {
			t.Errorf("class birth: shape %+v", cl.Shape)
		}
		if cl.Name == "arrival" && (cl.Shape.Layout != "2006-01-02 15:04" || cl.Shape.From.Year() != 3000 || cl.Shape.To.Year() != 9999) {
			t.Errorf("class arrival: shape %+v", cl.Shape)
		}
	}

	tests := []struct {
		name, from, to string
		want           []string
	}{
		{"unknown type", "type: email,", "type: mail,", []string{"classes", "class email", `shape "mail"`}},
		{"real domain", "domain: tokens.event.test", "domain: tokens.gmail.com", []string{"class email", "reserved"}},
		{"digits told from nothing", `prefix: "09", `, "", []string{"class badge", "needs a prefix"}},
		{"prefix not digits", `prefix: "09"`, `prefix: "0x"`, []string{"class badge", "prefix"}},
		{"parameter of another type", `keep_suffix: 2}`, `keep_suffix: 2, layout: "2006"}`, []string{"class badge", "takes only keep_suffix"}},
		{"date without a time of day, range too narrow", `layout: "2006-01-02 15:04", from: 3000-01-01`, `layout: "2006-01-02", from: 5000-01-01`, []string{"class arrival", "under the floor of 1000000", "add a time of day"}},
		{"birth date, range too narrow", `layout: "2006-01-02"}`, `layout: "2006-01-02", to: 7999-12-31}`, []string{"class birth", "holds 913105 tokens", "floor"}},
		{"date range too narrow", "to: 9999-12-31", "to: 3000-12-31", []string{"class arrival", "under the floor"}},
		{"deterministic digits", "{name: badge,", "{name: badge, kind: deterministic,", []string{"class badge", "deterministic class cannot use the digits shape"}},
		{"typo'd shape key", "keep_suffix:", "keep_sufix:", []string{"unknown key", "keep_sufix", "keep_suffix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(shapedClassesYAML, tt.from) {
				t.Fatalf("the classes lack %q", tt.from)
			}
			p := write(t, strings.Replace(shapedClassesYAML, tt.from, tt.to, 1))
			code, _, errOut := jetond(t, nil, "--check-config", p)
			if code == 0 {
				t.Fatal("accepted")
			}
			for _, w := range append(tt.want, p) {
				if !strings.Contains(errOut, w) {
					t.Errorf("error %q does not name %q", errOut, w)
				}
			}
		})
	}
}
