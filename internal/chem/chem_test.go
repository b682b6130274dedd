package chem_test

import (
	"io/fs"
	"math"
	"testing"
	"testing/fstest"

	"hazardwatch/configs"
	"hazardwatch/internal/chem"
)

func TestLoadReference(t *testing.T) {
	r, err := chem.Load(configs.Reference())
	if err != nil {
		t.Fatal(err)
	}
	// Counts from configs/reference/README.md: every row of every table.
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"Table 2 categories", len(r.Table2), 24},
		{"Table 3 substances", len(r.BetaSubstance), 14},
		{"Table 4 categories", len(r.BetaCategory), 24},
		{"OEL rows", len(r.OELs), 21},
		{"LEL rows", len(r.LELs), 20},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
		}
	}
	for _, c := range []struct {
		cas  string
		want float64
	}{
		{"7782-50-5", 5}, {"7664-41-7", 10}, {"75-44-5", 0.3}, {"67-56-1", 500},
		{"74-98-6", 50}, {"106-97-8", 50}, {"74-82-8", 50}, {"1333-74-0", 5},
		{"9004-70-0", 1}, // nitrocellulose: several rows, the smallest Q
	} {
		if got := r.Table1[c.cas].CriticalT; got != c.want {
			t.Errorf("Q(%s) = %v, want %v", c.cas, got, c.want)
		}
	}
	if o := r.OELs["7782-50-5"]; o.MAC != 1 || !o.Unverified {
		t.Errorf("chlorine OEL = %+v, want MAC 1 and unverified", o)
	}
	if l := r.LELs["74-82-8"]; l.PctVol != 4.4 || l.Unverified {
		t.Errorf("methane LEL = %+v, want 4.4 verified", l)
	}
}

func TestLoadBadTable(t *testing.T) {
	ref := configs.Reference()
	files := fstest.MapFS{}
	for _, n := range []string{"gb18218-2018-table1.csv", "gb18218-2018-table2.csv", "gb18218-2018-beta-alpha.csv", "gbz2.1-2019-oel.csv", "lel-uel.csv"} {
		data, err := fs.ReadFile(ref, n)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = &fstest.MapFile{Data: data}
	}
	files["lel-uel.csv"] = &fstest.MapFile{Data: []byte("name_zh,name_en,cas,lel_pct_vol,uel_pct_vol,source,note\n甲烷,Methane,74-82-8,four,17,x,y\n")}
	if _, err := chem.Load(files); err == nil {
		t.Fatal("a non-numeric LEL loaded without error")
	}
}

func TestOELLimit(t *testing.T) {
	for _, c := range []struct {
		o    chem.OEL
		want float64
		kind string
	}{
		{chem.OEL{MAC: 1}, 1, "MAC"},
		{chem.OEL{MAC: 1, PCTWA: 5, PCSTEL: 10}, 1, "MAC"},
		{chem.OEL{PCTWA: 20, PCSTEL: 30}, 30, "PC-STEL"},
		{chem.OEL{PCTWA: 2}, 2, "PC-TWA"},
	} {
		if v, k := c.o.Limit(); v != c.want || k != c.kind {
			t.Errorf("%+v.Limit() = %v %s, want %v %s", c.o, v, k, c.want, c.kind)
		}
	}
}

func TestGrade(t *testing.T) {
	r, err := chem.Load(configs.Reference())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		holdings []chem.Holding
		people   int
		wantR    float64
		wantSum  float64
		level    int
	}{
		// 80 t chlorine: β 4, Q 5; α 2.0 → R = 2·4·16 = 128, level 1.
		{"chlorine tank farm", []chem.Holding{{CAS: "7782-50-5", QuantityT: 80}}, 150, 128, 16, 1},
		// LPG 920 t: Q 50, β 1.5 (W2); α 2.0 → R = 2·1.5·18.4 = 55.2, level 2.
		{"LPG sphere", []chem.Holding{{CAS: "68476-85-7", Category: "W2", QuantityT: 920}}, 110, 55.2, 18.4, 2},
		// Methanol 7000 t (Q 500, W5.3 β 1) with 35 people (α 1.2) → R 16.8, level 3.
		{"methanol tanks", []chem.Holding{{CAS: "67-56-1", Category: "W5.3", QuantityT: 7000}}, 35, 16.8, 14, 3},
		// Mixed, nobody within 500 m (α 0.5): ammonia 10 t (β 2, Q 10) + unlisted J1 gas 5 t (β 4, Q 5) → R = 0.5·(2+4) = 3.
		{"mixed, α 0.5", []chem.Holding{{CAS: "7664-41-7", QuantityT: 10}, {CAS: "1-00-0", Category: "J1", QuantityT: 5}}, 0, 3, 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fs []chem.Factors
			var qs []float64
			for _, h := range tt.holdings {
				f, err := r.Factors(h)
				if err != nil {
					t.Fatal(err)
				}
				fs = append(fs, f)
				qs = append(qs, h.QuantityT)
			}
			g := chem.GradeOf(fs, qs, tt.people)
			if math.Abs(g.R-tt.wantR) > 1e-9 || math.Abs(g.Sum-tt.wantSum) > 1e-9 || g.Level != tt.level {
				t.Errorf("grade = %+v, want R %v Σ %v level %d", g, tt.wantR, tt.wantSum, tt.level)
			}
		})
	}
	if _, err := r.Factors(chem.Holding{CAS: "67-56-1", QuantityT: 1}); err == nil {
		t.Error("methanol without a category: no error, but β needs Table 4")
	}
	if _, err := r.Factors(chem.Holding{CAS: "1-00-0", Category: "Z9", QuantityT: 1}); err == nil {
		t.Error("unknown category: no error")
	}
}

func TestAlphaAndLevels(t *testing.T) {
	for _, c := range []struct {
		people int
		alpha  float64
	}{{0, 0.5}, {1, 1}, {29, 1}, {30, 1.2}, {49, 1.2}, {50, 1.5}, {99, 1.5}, {100, 2}, {5000, 2}} {
		if got := chem.Alpha(c.people); got != c.alpha {
			t.Errorf("Alpha(%d) = %v, want %v", c.people, got, c.alpha)
		}
	}
	for _, c := range []struct {
		r     float64
		level int
	}{{0, 4}, {9.99, 4}, {10, 3}, {49.9, 3}, {50, 2}, {99.9, 2}, {100, 1}} {
		if got := chem.LevelOf(c.r); got != c.level {
			t.Errorf("LevelOf(%v) = %d, want %d", c.r, got, c.level)
		}
	}
}

func TestValidCAS(t *testing.T) {
	for s, want := range map[string]bool{
		"7782-50-5": true, "7664-41-7": true, "68476-85-7": true, "50-00-0": true,
		"7782-50-6": false, "7782505": false, "77-82-50-5": false, "": false, "x7782-50-5": false,
	} {
		if got := chem.ValidCAS(s); got != want {
			t.Errorf("ValidCAS(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzValidCAS(f *testing.F) {
	f.Add("7782-50-5")
	f.Add("68476-85-7")
	f.Fuzz(func(t *testing.T, s string) {
		_ = chem.ValidCAS(s) // must not panic on any text
	})
}
