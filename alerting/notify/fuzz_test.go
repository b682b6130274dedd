package notify

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseRetryAfter: whatever a receiver sends as Retry-After, the wait
// is within [0, MaxRetryAfter], zero when not understood, and a plain
// number of seconds means that many seconds.
func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Thu, 06 Mar 2025 02:27:30 GMT")
	now := time.Date(2025, 3, 6, 2, 27, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if d < 0 || d > MaxRetryAfter || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %s, %v", v, d, ok)
		}
		s := strings.TrimSpace(v)
		if s != "" && len(s) < 6 && strings.Trim(s, "0123456789") == "" {
			n := 0
			for _, c := range s {
				n = n*10 + int(c-'0')
			}
			if !ok || d != min(time.Duration(n)*time.Second, MaxRetryAfter) {
				t.Fatalf("ParseRetryAfter(%q) = %s, %v; want %d s", v, d, ok, n)
			}
		}
	})
}

// FuzzTexts: whatever names and kinds the caller gives, even not UTF-8,
// the texts are valid UTF-8, open with their prefixes, keep the action a duty officer takes,
// and outgrow one segment only when the names cannot be cut further.
func FuzzTexts(f *testing.F) {
	f.Add("示范县恒安氯碱化工有限公司", "液氯储罐区", "氯气", "gas_toxic", "alarm", "L2", EventEscalated, 2, 0)
	f.Add("", "", "", "", "", "", "", 0, 0)
	f.Fuzz(func(t *testing.T, ent, src, gas, kind, class, level, event string, step, reminder int) {
		n := chlorine()
		n.EnterpriseName, n.HazardSourceName, n.Gas, n.Kind, n.Class, n.Level, n.Event = ent, src, gas, kind, class, level, event
		n.Step, n.Reminder = ((step%3)+3)%3, reminder
		zh, en := Texts{}.Format(&n)
		if !utf8.ValidString(zh) || !utf8.ValidString(en) || !strings.HasPrefix(zh, DefaultPrefix) || !strings.HasPrefix(en, DefaultPrefixEN) {
			t.Fatalf("texts %q / %q", zh, en)
		}
		if event == EventEscalated && n.Step > 0 && !strings.HasSuffix(zh, "已升级至"+stepZh[n.Step]+"。") {
			t.Fatalf("escalation text lost its ending: %q", zh)
		}
		if utf8.RuneCountInString(zh) > DefaultMaxRunes {
			// The text opens with the two names: too long, a name that can
			// be cut is cut. (Not "the text contains the name": the gas's
			// or the event's words may contain it too.)
			p := Texts{}.withDefaults().parts(&n)
			long := utf8.RuneCountInString(p.ent) > minNameRunes+1 || utf8.RuneCountInString(p.src) > minNameRunes+1
			if long && strings.HasPrefix(zh, DefaultPrefix+join(" ", p.ent, p.src)) {
				t.Fatalf("%d characters with a name left whole: %q", utf8.RuneCountInString(zh), zh)
			}
		}
	})
}
