package model

import "testing"

func TestKindNames(t *testing.T) {
	if n := len(Kinds()); n != 12 {
		t.Fatalf("%d kinds, want the 12 of SPEC §1", n)
	}
	for _, k := range Kinds() {
		got, ok := ParseKind(k.String())
		if !ok || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, ok)
		}
		if len(k.Units()) == 0 {
			t.Errorf("%s has no units", k)
		}
	}
	if _, ok := ParseKind("gas"); ok {
		t.Error(`ParseKind("gas") succeeded`)
	}
}

func TestQualityReasons(t *testing.T) {
	for r := ReasonTimeout; r <= reasonExceptionLast; r++ {
		if got := ParseQualityReason(r.String()); got != r {
			t.Errorf("ParseQualityReason(%q) = %v, want %v", r.String(), got, r)
		}
	}
	for s, want := range map[string]QualityReason{
		"":             ReasonNone,
		"exception_02": ModbusException(2),
		"exception_0B": ModbusException(0x0B),
		"exception_0c": ReasonOther,
		"exception_zz": ReasonOther,
		"made_up":      ReasonOther,
	} {
		if got := ParseQualityReason(s); got != want {
			t.Errorf("ParseQualityReason(%q) = %v, want %v", s, got, want)
		}
	}
	if s := ModbusException(0x0B).String(); s != "exception_0b" {
		t.Errorf("exception 0B = %q", s)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ModbusException(6).String() }); n != 0 {
		t.Errorf("String allocates %v times", n)
	}
}

func TestLimitLevels(t *testing.T) {
	want := map[LimitKind]AlarmLevel{HH: L2, H: L1, L: L1, LL: L2}
	for k, lvl := range want {
		if got := k.DefaultLevel(); got != lvl {
			t.Errorf("%s.DefaultLevel() = %s, want %s", k, got, lvl)
		}
	}
}

func TestRuleKinds(t *testing.T) {
	seen := map[string]bool{}
	for r := range NumRuleKinds {
		s := r.String()
		if s == "" || seen[s] {
			t.Errorf("rule %d named %q", r, s)
		}
		seen[s] = true
	}
	if s := NumRuleKinds.String(); s != "rule(14)" {
		t.Errorf("out of range: %q", s)
	}
	for r, high := range map[RuleKind]bool{ThresholdHigh: true, RateRise: true, PredictHigh: true, ThresholdLow: false, RateFall: false, PredictLow: false, Frozen: false} {
		if r.High() != high {
			t.Errorf("%s.High() = %v", r, !high)
		}
	}
}
