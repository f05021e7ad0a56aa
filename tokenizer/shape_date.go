package tokenizer

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Date-shaped tokens are instants written in the class's layout, drawn
// uniformly from a reserved range of days that no real value of the class
// takes (by default the years 3000 to 9999), among the instants whose
// digits have the Luhn sum tokenLuhnSum (1). A token is told from a real
// value by the range (Tokenize refuses a value inside it); a mistyped digit
// changes the Luhn sum, and any other mistyped character fails to parse or to
// re-format to the same text, so a mistyped token is refused without a
// store lookup.
//
// The layout must be numeric and fixed-width (zero-padded 2006, 01, 02, 15,
// 04, 05, with any separators), without a zone and without fractions of a
// second, and it must write a time of day. A date alone cannot reach the
// floor: for a check to catch every mistyped digit, at most one day in ten
// consecutive ones may be a token (days 10 to 19 differ in one digit), so
// a four-digit-year calendar has at most 4 valid days a month, about
// 470,000 in the years 1 to 9999, under MinShapedDomain. With minutes, the
// default range holds about 3.7 * 10^8 tokens; with hours, 5 * 10^6.
type dateShape struct {
	layout string
	// from is the first instant of the range; days its length.
	from time.Time
	days int64
	// unit is the layout's resolution and perDay the units in a day.
	unit   time.Duration
	perDay int64
	width  int
	// skeleton is a token with every digit written 0.
	skeleton string
	// domain is a lower bound of the count of tokens in the range.
	domain float64
}

// The default reserved range of the date shape.
var (
	DefaultDateFrom = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	DefaultDateTo   = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

func newDateShape(s Shape) (shaper, error) {
	if s.Domain != "" || s.KeepSuffix != 0 || s.Prefix != "" || s.LuhnValues {
		return nil, fmt.Errorf("the date shape takes only layout, from and to")
	}
	if s.Layout == "" {
		return nil, fmt.Errorf("the date shape needs a layout, e.g. \"2006-01-02 15:04\"")
	}
	from, to := s.From, s.To
	if from.IsZero() {
		from = DefaultDateFrom
	}
	if to.IsZero() {
		to = DefaultDateTo
	}
	for _, d := range []struct {
		name string
		t    time.Time
	}{{"from", from}, {"to", to}} {
		if d.t.Location() != time.UTC || d.t.Hour() != 0 || d.t.Minute() != 0 || d.t.Second() != 0 || d.t.Nanosecond() != 0 {
			return nil, fmt.Errorf("%s must be a date (e.g. 3000-01-01), a whole day in UTC", d.name)
		}
		if d.t.Year() < 1 || d.t.Year() > 9999 {
			return nil, fmt.Errorf("%s must be in the years 1 to 9999", d.name)
		}
	}
	if to.Before(from) {
		return nil, fmt.Errorf("from must not be after to")
	}
	d := &dateShape{layout: s.Layout, from: from, days: (to.Unix()-from.Unix())/86400 + 1}
	if err := d.checkLayout(); err != nil {
		return nil, fmt.Errorf("layout %q: %w", s.Layout, err)
	}
	if d.domain < MinShapedDomain {
		return nil, fmt.Errorf("the range %s to %s holds at least %.0f tokens in layout %q, under the floor of %d; widen the range or write finer times", from.Format(time.DateOnly), to.Format(time.DateOnly), d.domain, s.Layout, MinShapedDomain)
	}
	return d, nil
}

// checkLayout finds the layout's resolution and width, checks that it is
// numeric, fixed-width, zone-free and round-trips, and bounds the token
// domain from below.
func (d *dateShape) checkLayout() error {
	base := d.from
	f := func(t time.Time) string { return t.Format(d.layout) }
	ref := f(base)
	switch {
	case f(base.Add(time.Millisecond)) != ref:
		return fmt.Errorf("fractions of a second are not supported")
	case f(base.Add(time.Second)) != ref:
		d.unit = time.Second
	case f(base.Add(time.Minute)) != ref:
		d.unit = time.Minute
	case f(base.Add(time.Hour)) != ref:
		d.unit = time.Hour
	case f(base.AddDate(0, 0, 1)) != ref:
		return fmt.Errorf("a layout without a time of day cannot reach the floor of %d tokens with a check digit (a four-digit-year date has at most about 470,000 that pass one); add a time, e.g. \"2006-01-02 15:04\", or use the opaque shape", MinShapedDomain)
	default:
		return fmt.Errorf("it must write at least the year, month and day")
	}
	d.perDay = int64(24 * time.Hour / d.unit)
	d.width = len(ref)
	skeleton := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '0'
			}
			return r
		}, s)
	}
	wantSkel := skeleton(ref)
	if strings.ContainsFunc(wantSkel, func(r rune) bool { return r > 0x7e || r < 0x20 }) {
		return fmt.Errorf("it must be ASCII")
	}
	// Samples over the range's years and over every field's extremes.
	var samples []time.Time
	years := []int{d.from.Year(), d.from.AddDate(0, 0, int(d.days-1)).Year(), (d.from.Year() + d.from.AddDate(0, 0, int(d.days-1)).Year()) / 2}
	for _, y := range years {
		for _, md := range [][2]int{{1, 1}, {2, 28}, {9, 9}, {10, 10}, {12, 31}} {
			for _, hms := range [][3]int{{0, 0, 0}, {9, 9, 9}, {10, 10, 10}, {12, 30, 30}, {13, 45, 45}, {23, 59, 59}} {
				t := time.Date(y, time.Month(md[0]), md[1], hms[0], hms[1], hms[2], 0, time.UTC).Truncate(d.unit)
				samples = append(samples, t)
			}
		}
	}
	dayOf := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	anyDay := dayOf(base)
	for _, t := range samples {
		s := f(t)
		if len(s) != d.width || skeleton(s) != wantSkel {
			return fmt.Errorf("it must be numeric and fixed-width: zero-padded 2006, 01, 02, 15, 04 and 05 with separators, no month or day names, no AM/PM")
		}
		back, err := time.Parse(d.layout, s)
		if err != nil || !back.Equal(t) {
			return fmt.Errorf("it must write the year (four digits), month, day and the time of day on a 24-hour clock, and read back what it writes")
		}
		if f(t.In(time.FixedZone("", 3600))) != f(t.Add(time.Hour)) {
			return fmt.Errorf("it must not write a time zone; tokens and values are read in UTC")
		}
		// The Luhn sum of a date and a time of day is the sum of their
		// parts: that is what makes the domain count below exact.
		tod := t.Sub(dayOf(t))
		if luhnSum(s) != (luhnSum(f(dayOf(t)))+luhnSum(f(anyDay.Add(tod)))-luhnSum(f(anyDay))+20)%10 {
			return fmt.Errorf("it must write the date and the time of day in separate fields")
		}
	}
	// Each day holds hist[r] times of day whose digits add r to the day's
	// Luhn sum; whatever a day's own sum, at least min(hist) of its times
	// pass the check.
	var hist [10]int64
	base0 := luhnSum(f(anyDay))
	for i := range d.perDay {
		hist[(luhnSum(f(anyDay.Add(time.Duration(i)*d.unit)))-base0+10)%10]++
	}
	least := hist[0]
	for _, h := range hist {
		least = min(least, h)
	}
	d.skeleton = wantSkel
	d.domain = float64(d.days) * float64(least)
	return nil
}

func (d *dateShape) kind() ShapeKind     { return ShapeDate }
func (d *dateShape) domainBits() float64 { return math.Log2(d.domain) }

// inRange reports whether t falls on a day of the reserved range.
func (d *dateShape) inRange(t time.Time) bool {
	day := (t.Unix() - d.from.Unix()) / 86400
	if t.Unix() < d.from.Unix() {
		return false
	}
	return day < d.days
}

func (d *dateShape) accept(class, v string) error {
	t, err := time.Parse(d.layout, v)
	if err != nil {
		return shapeRefusal(class, "is not a date in the layout of its class's tokens")
	}
	if d.inRange(t) {
		return shapeRefusal(class, "falls in the reserved range of its tokens")
	}
	return nil
}

func (d *dateShape) mint(r io.Reader, _ string) (string, error) {
	n := uint64(d.days) * uint64(d.perDay)
	for {
		i, err := readUniform(r, n)
		if err != nil {
			return "", err
		}
		day, rest := int64(i)/d.perDay, int64(i)%d.perDay
		s := d.from.AddDate(0, 0, int(day)).Add(time.Duration(rest) * d.unit).Format(d.layout)
		if luhnSum(s) == tokenLuhnSum {
			return s, nil
		}
	}
}

func (d *dateShape) parse(s string) (string, bool) {
	if len(s) != d.width || luhnSum(s) != tokenLuhnSum {
		return "", false
	}
	t, err := time.Parse(d.layout, s)
	if err != nil || !d.inRange(t) || t.Format(d.layout) != s {
		return "", false
	}
	return s, true
}

// canaryValue is a plausible fake value for a canary: a time from 1950 to
// 1999 in the layout, drawn from n. A range that reserves those years
// leaves none; the canary then needs a value of the caller's.
func (d *dateShape) canaryValue(n uint64) (string, error) {
	t := time.Date(1950+int(n%50), time.Month(1+(n/50)%12), 1+int((n/600)%28), 0, 0, 0, 0, time.UTC)
	t = t.Add(time.Duration((n/16800)%uint64(d.perDay)) * d.unit)
	if d.inRange(t) {
		return "", &UserError{fmt.Errorf("%w: the date shape's reserved range covers 1950 to 1999; give the canary a value", ErrInvalidValue)}
	}
	return t.Format(d.layout), nil
}
