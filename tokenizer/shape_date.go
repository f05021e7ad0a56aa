package tokenizer

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Date-shaped tokens are dates or instants written in the class's layout,
// drawn uniformly from a reserved range of days that no real value of the
// class takes (by default the years 3000 to 9999), among those whose digits
// pass the layout's check:
//
//   - A layout with a time of day (hours, minutes or seconds): the digits'
//     Luhn sum is tokenLuhnSum (1). Any single mistyped digit changes the
//     sum, so every one is caught.
//   - A date-only layout (e.g. "2006-01-02", for birth dates): the digits'
//     Luhn sum is odd, the parity of tokenLuhnSum. A stronger check cannot
//     reach the floor: the sum 1 keeps one day in ten, about 256,000 in the
//     default range, and no check that catches every mistyped digit keeps
//     more than 4 days a month (days 10 to 19 differ in one digit), about
//     336,000, both under MinShapedDomain. The parity keeps half the days,
//     about 1.28 * 10^6 in the default range, and catches exactly 5 of the 9
//     wrong digits in any place: a digit counted once changes the parity
//     when replaced by one of the 5 digits of the other parity, a doubled
//     one (2d, less 9 from 5 on) when replaced by one on the other side of
//     4|5. A mistype that keeps the parity is still refused when it is no
//     date (month 13, 31 April) or leaves the range; the others are
//     well-formed tokens, looked up, and found only if issued.
//
// Either way a token is told from a real value by the range alone
// (Tokenize refuses a value inside it), and any mistyped character other
// than a digit fails to parse or to re-format to the same text; a token
// that fails its check is refused without a store lookup.
//
// The layout must be numeric and fixed-width (zero-padded 2006, 01, 02, 15,
// 04, 05, with any separators), without a zone and without fractions of a
// second. A fixed-width numeric layout writes each field's digits in fixed
// places, so the Luhn sum of an instant is the sum, mod 10, of what its
// year, its day of the year and its time of day add (checkLayout verifies
// it): count adds up the range's tokens exactly from those parts, walking
// the years, not the days. A range holding fewer than MinShapedDomain
// tokens is refused; with minutes, the default range holds about
// 3.7 * 10^8, with hours 6 * 10^6.
type dateShape struct {
	layout string
	// from is the first instant of the range; days its length.
	from time.Time
	days int64
	// unit is the layout's resolution (a day for a date-only layout) and
	// perDay the units in a day.
	unit   time.Duration
	perDay int64
	width  int
	// dateOnly is a layout without a time of day, whose check is the
	// parity of the Luhn sum.
	dateOnly bool
	// skeleton is a token with every digit written 0.
	skeleton string
	// domain is the number of tokens in the range.
	domain int64
}

// The default reserved range of the date shape.
var (
	DefaultDateFrom = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	DefaultDateTo   = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

func newDateShape(s Shape) (shaper, error) {
	d, err := buildDateShape(s)
	if err != nil {
		return nil, err
	}
	if d.domain < MinShapedDomain {
		finer := "write finer times"
		if d.dateOnly {
			finer = "add a time of day to the layout"
		}
		return nil, fmt.Errorf("the range %s to %s holds %d tokens in layout %q (%s), under the floor of %d; widen the range or %s", d.from.Format(time.DateOnly), d.to().Format(time.DateOnly), d.domain, d.layout, d.checkName(), MinShapedDomain, finer)
	}
	return d, nil
}

// buildDateShape checks the date shape's parameters and counts its tokens,
// without holding the count to the floor.
func buildDateShape(s Shape) (*dateShape, error) {
	if s.Domain != "" || s.KeepSuffix != 0 || s.Prefix != "" || s.LuhnValues {
		return nil, fmt.Errorf("the date shape takes only layout, from and to")
	}
	if s.Layout == "" {
		return nil, fmt.Errorf("the date shape needs a layout, e.g. \"2006-01-02\" or \"2006-01-02 15:04\"")
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
	return d, nil
}

// to is the last day of the range.
func (d *dateShape) to() time.Time { return d.from.AddDate(0, 0, int(d.days-1)) }

// checkName says what the shape's check is, for messages.
func (d *dateShape) checkName() string {
	if d.dateOnly {
		return "days whose digits have an odd Luhn sum"
	}
	return fmt.Sprintf("instants whose digits have the Luhn sum %d", tokenLuhnSum)
}

// check reports whether the digits of s pass the shape's check: the Luhn
// sum tokenLuhnSum with a time of day, a Luhn sum of its parity (odd)
// without. Every token passes it.
func (d *dateShape) check(s string) bool {
	if d.dateOnly {
		return luhnSum(s)%2 == tokenLuhnSum%2
	}
	return luhnSum(s) == tokenLuhnSum
}

// tokensPerDay returns, for each Luhn sum r a day's text (at midnight) may
// have, how many instants of such a day are tokens. hist[k] counts the
// times of day whose digits add k to the day's sum.
func (d *dateShape) tokensPerDay(hist [10]int64) (per [10]int64) {
	for r := range per {
		if d.dateOnly {
			if r%2 == tokenLuhnSum%2 {
				per[r] = 1
			}
			continue
		}
		per[r] = hist[(tokenLuhnSum-r+10)%10]
	}
	return per
}

// checkLayout finds the layout's resolution and width, checks that it is
// numeric, fixed-width, zone-free, round-trips and adds its fields' Luhn
// sums, and counts the range's tokens.
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
	case f(base.Add(12*time.Hour)) != ref:
		return fmt.Errorf("it must write the time of day on a 24-hour clock (15), or not at all")
	case f(base.AddDate(0, 0, 1)) != ref:
		d.unit = 24 * time.Hour
		d.dateOnly = true
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
	years := []int{d.from.Year(), d.to().Year(), (d.from.Year() + d.to().Year()) / 2}
	for _, y := range years {
		for _, md := range [][2]int{{1, 1}, {2, 28}, {9, 9}, {10, 10}, {12, 31}} {
			for _, hms := range [][3]int{{0, 0, 0}, {9, 9, 9}, {10, 10, 10}, {12, 30, 30}, {13, 45, 45}, {23, 59, 59}} {
				t := time.Date(y, time.Month(md[0]), md[1], hms[0], hms[1], hms[2], 0, time.UTC).Truncate(d.unit)
				samples = append(samples, t)
			}
		}
	}
	anyDay := dayOf(base)
	for _, t := range samples {
		s := f(t)
		if len(s) != d.width || skeleton(s) != wantSkel {
			return fmt.Errorf("it must be numeric and fixed-width: zero-padded 2006, 01, 02, 15, 04 and 05 with separators, no month or day names, no AM/PM")
		}
		back, err := time.Parse(d.layout, s)
		if err != nil || !back.Equal(t) {
			return fmt.Errorf("it must write the year (four digits), month, day and any time of day on a 24-hour clock, and read back what it writes")
		}
		if f(t.In(time.FixedZone("", 3600))) != f(t.Add(time.Hour)) {
			return fmt.Errorf("it must not write a time zone; tokens and values are read in UTC")
		}
		// The Luhn sum of a date and a time of day is the sum of their
		// parts: count relies on it.
		tod := t.Sub(dayOf(t))
		if luhnSum(s) != (luhnSum(f(dayOf(t)))+luhnSum(f(anyDay.Add(tod)))-luhnSum(f(anyDay))+20)%10 {
			return fmt.Errorf("it must write the date and the time of day in separate fields")
		}
	}
	d.skeleton = wantSkel
	var err error
	d.domain, err = d.count(f)
	return err
}

func dayOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// count returns the exact number of tokens in the range. The Luhn sum, mod
// 10, of an instant's text is what its year's first day has, plus what its
// day of the year adds (given whether the year is a leap year), plus what
// its time of day adds. So each whole year contributes, for each residue
// r, its days that add r times the tokens of a day of that sum; only the
// range's first and last years, which may be partial, are walked day by
// day. The additivity is checked over every day of several years (the
// range's ends and middle, leap and common years, 1900 and 9999); a layout
// that breaks it is refused.
func (d *dateShape) count(f func(time.Time) string) (int64, error) {
	var hist [10]int64
	anyDay := dayOf(d.from)
	base := luhnSum(f(anyDay))
	for i := range d.perDay {
		hist[(luhnSum(f(anyDay.Add(time.Duration(i)*d.unit)))-base+10)%10]++
	}
	per := d.tokensPerDay(hist)

	// adds[leap][yd] is what day yd (from 0) of a common or leap year adds
	// to the sum of the year's first day; whole[leap][r] counts the days
	// that add r.
	var adds [2][]int
	var whole [2][10]int64
	for leap, y := range [2]int{2001, 2004} {
		jan1 := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		s0 := luhnSum(f(jan1))
		for t := jan1; t.Year() == y; t = t.AddDate(0, 0, 1) {
			r := (luhnSum(f(t)) - s0 + 10) % 10
			adds[leap] = append(adds[leap], r)
			whole[leap][r]++
		}
	}
	isLeap := func(y int) int {
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 1
		}
		return 0
	}
	for _, y := range []int{d.from.Year(), d.to().Year(), (d.from.Year() + d.to().Year()) / 2, 1900, 1996, 2000, 9999} {
		jan1 := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		s0 := luhnSum(f(jan1))
		for yd, t := 0, jan1; t.Year() == y; yd, t = yd+1, t.AddDate(0, 0, 1) {
			if luhnSum(f(t)) != (s0+adds[isLeap(y)][yd])%10 {
				return 0, fmt.Errorf("it must write the year, the month and the day in separate fields")
			}
		}
	}

	var total int64
	first, last := d.from, d.to()
	for y := first.Year(); y <= last.Year(); y++ {
		s0 := luhnSum(f(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)))
		l := isLeap(y)
		lo, hi := 0, len(adds[l])-1
		if y == first.Year() {
			lo = first.YearDay() - 1
		}
		if y == last.Year() {
			hi = last.YearDay() - 1
		}
		if lo == 0 && hi == len(adds[l])-1 {
			for r, n := range whole[l] {
				total += n * per[(s0+r)%10]
			}
			continue
		}
		for yd := lo; yd <= hi; yd++ {
			total += per[(s0+adds[l][yd])%10]
		}
	}
	return total, nil
}

func (d *dateShape) kind() ShapeKind     { return ShapeDate }
func (d *dateShape) domainBits() float64 { return math.Log2(float64(d.domain)) }

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
		if d.check(s) {
			return s, nil
		}
	}
}

func (d *dateShape) parse(s string) (string, bool) {
	if len(s) != d.width || !d.check(s) {
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
