package notify

import (
	"strings"
	"testing"
	"unicode/utf8"
)

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
			p := Texts{}.withDefaults().parts(&n)
			if utf8.RuneCountInString(p.ent) > minNameRunes+1 && strings.Contains(zh, p.ent) ||
				utf8.RuneCountInString(p.src) > minNameRunes+1 && strings.Contains(zh, p.src) {
				t.Fatalf("%d characters with a name left whole: %q", utf8.RuneCountInString(zh), zh)
			}
		}
	})
}
