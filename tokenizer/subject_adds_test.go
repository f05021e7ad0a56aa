package tokenizer

import (
	"reflect"
	"testing"
	"time"
)

// subjectAddsSimple is subjectAdds written the plain way, one map entry,
// member and append at a time: the reference the batched form must match.
func subjectAddsSimple(tk *tenantKeys, work []pending) []SetAdd {
	var adds []SetAdd
	at := map[string]int{}
	for _, p := range work {
		if p.subject == "" || p.refused {
			continue
		}
		i, seen := at[p.subject]
		if !seen {
			i = len(adds)
			at[p.subject] = i
			adds = append(adds, SetAdd{Key: subjectName(tk, p.subject), TTL: p.ttl})
		}
		a := &adds[i]
		a.Members = append(a.Members, subjectMember(tk, p.name))
		if seen && a.TTL != 0 && (p.ttl == 0 || p.ttl > a.TTL) {
			a.TTL = p.ttl
		}
	}
	return adds
}

func TestSubjectAddsGroupsBySubject(t *testing.T) {
	tk, _ := benchKeys()
	type it struct {
		subject string
		ttl     time.Duration
		refused bool
	}
	for _, tc := range []struct {
		name  string
		items []it
		want  int // subject indexes
	}{
		{"none", nil, 0},
		{"no subjects", []it{{"", time.Hour, false}, {"", 0, false}}, 0},
		{"runs", []it{{"fake-a", time.Hour, false}, {"fake-a", time.Hour, false}, {"fake-b", time.Hour, false}}, 2},
		{"interleaved", []it{{"fake-a", time.Hour, false}, {"fake-b", time.Hour, false}, {"fake-a", time.Hour, false}, {"", 0, false}, {"fake-b", time.Minute, false}, {"fake-a", time.Hour, false}}, 2},
		{"refused and empty skipped", []it{{"fake-a", time.Hour, true}, {"", time.Hour, false}, {"fake-a", time.Minute, false}, {"fake-c", time.Hour, true}}, 1},
		{"longest lifetime wins", []it{{"fake-a", time.Minute, false}, {"fake-a", time.Hour, false}, {"fake-b", time.Hour, false}, {"fake-b", time.Minute, false}}, 2},
		{"permanent wins", []it{{"fake-a", time.Minute, false}, {"fake-a", 0, false}, {"fake-a", time.Hour, false}, {"fake-b", 0, false}, {"fake-b", time.Hour, false}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := make([]pending, len(tc.items))
			for i, x := range tc.items {
				work[i] = pending{idx: i, subject: x.subject, ttl: x.ttl, refused: x.refused, name: recordName(tk, benchToken(i).String())}
			}
			got, want := subjectAdds(tk, work), subjectAddsSimple(tk, work)
			if len(got) != tc.want {
				t.Fatalf("%d subject indexes, want %d", len(got), tc.want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("subjectAdds = %q\nwant %q", got, want)
			}
		})
	}
}
