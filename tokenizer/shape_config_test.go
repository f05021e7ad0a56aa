package tokenizer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

func day(y, m, d int) time.Time { return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC) }

// TestShapeValidate: a bad shape, or one a deterministic class may not
// use, is refused with a message naming the class and the parameter.
func TestShapeValidate(t *testing.T) {
	email := func(s tokenizer.Shape) tokenizer.Class {
		return tokenizer.Class{Name: "c", Kind: tokenizer.KindRandom, Mask: "all", Shape: s}
	}
	det := func(s tokenizer.Shape) tokenizer.Class {
		c := email(s)
		c.Kind = tokenizer.KindDeterministic
		return c
	}
	tests := []struct {
		name  string
		class tokenizer.Class
		want  string // "" for valid
	}{
		{"opaque", email(tokenizer.Shape{}), ""},
		{"opaque by name", email(tokenizer.Shape{Kind: tokenizer.ShapeOpaque}), ""},
		{"opaque with a parameter", email(tokenizer.Shape{Kind: tokenizer.ShapeOpaque, Prefix: "9"}), "takes no parameters"},
		{"unknown shape", email(tokenizer.Shape{Kind: "phone"}), `shape "phone" must be`},
		{"email, default domain", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail}), ""},
		{"email under .test", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "tokens.event.test"}), ""},
		{"email under example.org", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "tok.example.org"}), ""},
		{"email under a real domain", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "tokens.gmail.com"}), "reserved by RFC 2606 or RFC 6761"},
		{"email, a domain ending like a reserved one", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "notexample.com"}), "reserved"},
		{"email, upper-case domain", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "Tok.Invalid"}), "lower-case domain"},
		{"email, bad label", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "-x.invalid"}), "lower-case domain"},
		{"email with a digits parameter", email(tokenizer.Shape{Kind: tokenizer.ShapeEmail, KeepSuffix: 2}), "takes only a domain"},
		{"digits with a prefix", email(tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "099", KeepSuffix: 2}), ""},
		{"digits with Luhn values", email(tokenizer.Shape{Kind: tokenizer.ShapeDigits, LuhnValues: true}), ""},
		{"digits told from nothing", email(tokenizer.Shape{Kind: tokenizer.ShapeDigits, KeepSuffix: 2}), "needs a prefix"},
		{"digits, non-digit prefix", email(tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9a"}), "digits only"},
		{"digits, negative suffix", email(tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9", KeepSuffix: -1}), "keep_suffix"},
		{"digits with a layout", email(tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9", Layout: "2006"}), "takes only keep_suffix"},
		{"date with minutes", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04"}), ""},
		{"date, RFC 3339 without zone", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02T15:04:05"}), ""},
		{"date with hours", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "02/01/2006 15h"}), ""},
		{"date without a layout", email(tokenizer.Shape{Kind: tokenizer.ShapeDate}), "needs a layout"},
		{"birth date, default range", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02"}), ""},
		{"birth date, day first", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "02/01/2006"}), ""},
		{"birth date, range too narrow", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02", From: day(3000, 1, 1), To: day(7999, 12, 31)}), "holds 913105 tokens"},
		{"birth date, too narrow, says what to do", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02", From: day(5000, 1, 1)}), "add a time of day"},
		{"date, 12-hour clock without minutes", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 03"}), "24-hour clock"},
		{"date without a day", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01"}), "at least the year, month and day"},
		{"date, month names", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "02 Jan 2006 15:04"}), "numeric and fixed-width"},
		{"date, unpadded day", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-2 15:04"}), "numeric and fixed-width"},
		{"date, 12-hour clock", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 03:04"}), "24-hour clock"},
		{"date, two-digit year", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "06-01-02 15:04"}), "four digits"},
		{"date, a zone", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04 -0700"}), "time zone"},
		{"date, fractions", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04:05.000"}), "fractions"},
		{"date, range too narrow", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04", From: day(3000, 1, 1), To: day(3010, 12, 31)}), "under the floor of 1000000"},
		{"date, hours over 1000 years", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15", From: day(3000, 1, 1), To: day(3999, 12, 31)}), "under the floor"},
		{"date, range upside down", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04", From: day(5000, 1, 1), To: day(4000, 1, 1)}), "from must not be after to"},
		{"date, range not whole days", email(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04", From: day(3000, 1, 1).Add(time.Hour)}), "a whole day"},
		{"deterministic email", det(tokenizer.Shape{Kind: tokenizer.ShapeEmail}), ""},
		{"deterministic digits", det(tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9"}), "deterministic class cannot use the digits shape"},
		{"deterministic date", det(tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02T15:04:05"}), "deterministic class cannot use the date shape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.class.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted it; want an error containing %q", tt.want)
			case tt.want != "" && (!strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "class c")):
				t.Fatalf("Validate: %v; want the class named and %q", err, tt.want)
			}
		})
	}
}

// TestValidateShapesAcrossClasses: classes whose tokens one mistyped
// character apart could pass for each other's are refused together.
func TestValidateShapesAcrossClasses(t *testing.T) {
	mk := func(name string, s tokenizer.Shape) tokenizer.Class {
		return tokenizer.Class{Name: name, Kind: tokenizer.KindRandom, Mask: "all", Shape: s}
	}
	tests := []struct {
		name    string
		classes []tokenizer.Class
		want    string
	}{
		{"one domain shared", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeEmail}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeEmail})}, ""},
		{"domains far apart", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "a.jeton.test"}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "bb.jeton.test"})}, ""},
		{"domains one apart", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "a.jeton.test"}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "b.jeton.test"})}, "email domains differ in one character"},
		{"layouts one apart", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04"}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006/01-02 15:04"})}, "date layouts differ in one character"},
		{"layouts far apart", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04"}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "02/01/2006 15:04"})}, ""},
		{"one separator beside digits", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "20060102T1504"}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9"})}, "fewer than two separators"},
		{"no separator beside digits", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "20060102"}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9"})}, "fewer than two separators"},
		{"date-only beside digits", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02"}), mk("b", tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9"})}, ""},
		{"one separator alone", []tokenizer.Class{mk("a", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "20060102T1504"})}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tokenizer.ValidateShapes(tt.classes)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("ValidateShapes: %v; want %q", err, tt.want)
			}
		})
	}
}

// TestShapeDomains pins the documented domain bounds: 128 bits for email,
// exactly 10^6 for the shortest digits value, and the date domains the
// README quotes for the default range.
func TestShapeDomains(t *testing.T) {
	tests := []struct {
		name     string
		shape    tokenizer.Shape
		min, max float64 // bits
	}{
		{"email", tokenizer.Shape{Kind: tokenizer.ShapeEmail}, 128, 128},
		{"digits", tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9"}, 19.93, 19.94},
		{"date, minutes, 3000-9999", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04"}, 28.4, 28.5}, // 3.68e8
		{"date, hours, 3000-9999", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15"}, 22.54, 22.56},    // 6.14e6
		{"date only, 3000-9999", tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02"}, 20.28, 20.29},         // 1.28e6
	}
	for _, tt := range tests {
		bits, err := tokenizer.ShapeDomainBits(tt.shape)
		if err != nil || bits < tt.min || bits > tt.max {
			t.Errorf("%s: domain of 2^%.2f, %v; want 2^%.2f to 2^%.2f", tt.name, bits, err, tt.min, tt.max)
		}
	}
}

// TestDateTokenCount: the date shape's token count, computed at
// configuration from years rather than days, equals the count found by
// walking every instant of the range and applying the documented check
// (written here afresh): a Luhn sum of 1 with a time of day, an odd one
// without. Ranges cover partial first and last years, leap days, centuries
// and each resolution.
func TestDateTokenCount(t *testing.T) {
	tests := []struct {
		name     string
		layout   string
		from, to time.Time
		step     time.Duration // the layout's resolution; a day when date-only
		want     int64         // pinned where the README quotes it; 0 to only compare
	}{
		{"date only, default range", "2006-01-02", time.Time{}, time.Time{}, 24 * time.Hour, 1_278_345},
		{"date only, partial years and 2000", "2006-01-02", day(1999, 3, 17), day(2009, 2, 3), 24 * time.Hour, 0},
		{"date only, day first, one leap day", "02/01/2006", day(2024, 2, 29), day(2024, 2, 29), 24 * time.Hour, 0},
		{"date only, across 2100", "20060102", day(2099, 12, 30), day(2101, 1, 2), 24 * time.Hour, 0},
		{"date only, one partial year", "2006.01.02", day(4000, 2, 27), day(4000, 11, 3), 24 * time.Hour, 0},
		{"hours", "2006-01-02 15", day(2015, 6, 1), day(2017, 3, 1), time.Hour, 0},
		{"minutes, day first", "02/01/2006 15:04", day(2024, 2, 27), day(2024, 3, 2), time.Minute, 0},
		{"seconds", "20060102T150405", day(2024, 2, 29), day(2024, 2, 29), time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shape := tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: tt.layout, From: tt.from, To: tt.to}
			got, err := tokenizer.DateTokenCount(shape)
			if err != nil {
				t.Fatal(err)
			}
			from, to := tt.from, tt.to
			if from.IsZero() {
				from, to = tokenizer.DefaultDateFrom, tokenizer.DefaultDateTo
			}
			var walked int64
			for at := from; at.Before(to.AddDate(0, 0, 1)); at = at.Add(tt.step) {
				s := at.Format(tt.layout)
				if tt.step == 24*time.Hour && luhnSum(s)%2 == 1 || tt.step < 24*time.Hour && luhnSum(s) == 1 {
					walked++
				}
			}
			if got != walked || tt.want != 0 && got != tt.want {
				t.Errorf("counted %d tokens; walking the range finds %d (pinned %d)", got, walked, tt.want)
			}
		})
	}
}
