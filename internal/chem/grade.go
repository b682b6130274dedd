package chem

import "fmt"

// Holding is one chemical of a hazard source, as the grading needs it.
type Holding struct {
	CAS       string
	Category  string // GB 18218-2018 Table 2 symbol; may be empty for Table 1 ∩ Table 3 substances
	QuantityT float64
}

// Factors are the looked-up Q and β of one holding.
type Factors struct {
	CriticalT float64
	Beta      float64
}

// Factors looks up Q (Table 1 by CAS, else Table 2 by category) and β
// (Table 3 by substance, else Table 4 by category) for h.
func (r *Reference) Factors(h Holding) (Factors, error) {
	var f Factors
	if s, ok := r.Table1[h.CAS]; ok {
		f.CriticalT = s.CriticalT
	} else if h.Category == "" {
		return f, fmt.Errorf("%s is not in GB 18218-2018 Table 1: give its Table 2 category for the critical quantity", h.CAS)
	} else if q, ok := r.Table2[h.Category]; ok {
		f.CriticalT = q
	} else {
		return f, fmt.Errorf("unknown GB 18218-2018 category %q", h.Category)
	}
	if b, ok := r.BetaSubstance[h.CAS]; ok {
		f.Beta = b
	} else if h.Category == "" {
		return f, fmt.Errorf("%s is not a Table 3 gas: give its Table 2 category for β (Table 4)", h.CAS)
	} else if b, ok := r.BetaCategory[h.Category]; ok {
		f.Beta = b
	} else {
		return f, fmt.Errorf("unknown GB 18218-2018 category %q", h.Category)
	}
	return f, nil
}

// Alpha is GB 18218-2018 Table 5's α for the people within 500 m.
func Alpha(people int) float64 {
	switch {
	case people >= 100:
		return 2.0
	case people >= 50:
		return 1.5
	case people >= 30:
		return 1.2
	case people >= 1:
		return 1.0
	}
	return 0.5
}

// Grade is the result of grading a unit per GB 18218-2018 §4.
type Grade struct {
	// Sum is Σ qᵢ/Qᵢ: the unit is a major hazard source when it is ≥ 1.
	Sum float64
	// R = α · Σ βᵢ·qᵢ/Qᵢ.
	R     float64
	Level int
}

// Major reports whether the unit is a major hazard source.
func (g Grade) Major() bool { return g.Sum >= 1 }

// LevelOf maps R to a level (GB 18218-2018 Table 6).
func LevelOf(r float64) int {
	switch {
	case r >= 100:
		return 1
	case r >= 50:
		return 2
	case r >= 10:
		return 3
	}
	return 4
}

// GradeOf grades holdings whose factors were looked up, with people within 500 m.
func GradeOf(factors []Factors, quantities []float64, people int) Grade {
	var g Grade
	var weighted float64
	for i, f := range factors {
		g.Sum += quantities[i] / f.CriticalT
		weighted += f.Beta * quantities[i] / f.CriticalT
	}
	g.R = Alpha(people) * weighted
	g.Level = LevelOf(g.R)
	return g
}
