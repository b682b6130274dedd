// Package chem owns the reference tables hazardwatch rests on and the
// arithmetic on them: GB 18218-2018 critical quantities and correction
// factors (grading a hazard source), GBZ 2.1-2019 occupational exposure
// limits (%OEL set points) and explosive limits (%LEL set points).
//
// The tables are CSV files copied from the standards with a source column per
// row (configs/reference/). A row whose note says "unverified" is kept, and
// everything computed from it is flagged so that check and the UI can say
// that an engineer must confirm it.
package chem

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
)

// Substance is a Table 1 entry of GB 18218-2018.
type Substance struct {
	Name      string
	CriticalT float64
}

// OEL is a GBZ 2.1-2019 row.
type OEL struct {
	Name               string
	MAC, PCTWA, PCSTEL float64 // mg/m³, 0 when the standard gives none
	IDLH               float64 // mg/m³ (NIOSH), 0 when unknown
	PPMPerMgM3         float64
	Unverified         bool
}

// Limit returns the OEL that %OEL set points refer to: the MAC where the
// standard gives one, else the PC-STEL, else the PC-TWA (SPEC §4), and which.
func (o OEL) Limit() (mgM3 float64, kind string) {
	switch {
	case o.MAC > 0:
		return o.MAC, "MAC"
	case o.PCSTEL > 0:
		return o.PCSTEL, "PC-STEL"
	default:
		return o.PCTWA, "PC-TWA"
	}
}

// LEL is a lower explosive limit row.
type LEL struct {
	Name       string
	PctVol     float64
	Unverified bool
}

// Reference holds every table, keyed by CAS number or category symbol.
type Reference struct {
	Table1        map[string]Substance // CAS → Q
	Table2        map[string]float64   // category symbol → Q
	BetaSubstance map[string]float64   // CAS → β (Table 3)
	BetaCategory  map[string]float64   // category symbol → β (Table 4)
	OELs          map[string]OEL       // CAS
	LELs          map[string]LEL       // CAS
}

// Files the reference folder must hold.
const (
	fileTable1 = "gb18218-2018-table1.csv"
	fileTable2 = "gb18218-2018-table2.csv"
	fileBeta   = "gb18218-2018-beta-alpha.csv"
	fileOEL    = "gbz2.1-2019-oel.csv"
	fileLEL    = "lel-uel.csv"
)

var casRE = regexp.MustCompile(`\b\d{2,7}-\d{2}-\d\b`)

// Load reads the tables from fsys (the root holding the CSV files).
func Load(fsys fs.FS) (*Reference, error) {
	r := &Reference{
		Table1: map[string]Substance{}, Table2: map[string]float64{},
		BetaSubstance: map[string]float64{}, BetaCategory: map[string]float64{},
		OELs: map[string]OEL{}, LELs: map[string]LEL{},
	}
	var errs []error
	load := func(name string, each func(row map[string]string) error) {
		if err := readCSV(fsys, name, each); err != nil {
			errs = append(errs, err)
		}
	}
	load(fileTable1, func(row map[string]string) error {
		q, err := num(row, "critical_quantity_t")
		if err != nil {
			return err
		}
		for _, cas := range casRE.FindAllString(row["cas"], -1) {
			// A CAS that several rows share (nitrocellulose by water content)
			// keeps the smallest Q: without the row's detail the conservative
			// grade is the one to show.
			if old, ok := r.Table1[cas]; ok && old.CriticalT <= q {
				continue
			}
			r.Table1[cas] = Substance{Name: row["name_zh"], CriticalT: q}
		}
		return nil
	})
	load(fileTable2, func(row map[string]string) error {
		q, err := num(row, "critical_quantity_t")
		r.Table2[row["symbol"]] = q
		return err
	})
	load(fileBeta, func(row map[string]string) error {
		v, err := num(row, "value")
		if err != nil {
			return err
		}
		switch row["kind"] {
		case "beta_substance":
			cas := casRE.FindString(row["key"])
			if cas == "" {
				return fmt.Errorf("key %q has no CAS number", row["key"])
			}
			r.BetaSubstance[cas] = v
		case "beta_category":
			r.BetaCategory[row["key"]] = v
		}
		return nil
	})
	load(fileOEL, func(row map[string]string) error {
		var o OEL
		var err error
		o.Name = row["name_zh"]
		for _, f := range []struct {
			col string
			dst *float64
		}{{"mac_mg_m3", &o.MAC}, {"pc_twa_mg_m3", &o.PCTWA}, {"pc_stel_mg_m3", &o.PCSTEL}, {"idlh_mg_m3", &o.IDLH}, {"ppm_per_mg_m3_at_20C", &o.PPMPerMgM3}} {
			if row[f.col] == "" {
				continue
			}
			if *f.dst, err = num(row, f.col); err != nil {
				return err
			}
		}
		if o.MAC == 0 && o.PCSTEL == 0 && o.PCTWA == 0 {
			return errors.New("row gives no occupational exposure limit")
		}
		o.Unverified = strings.Contains(row["note"], "unverified")
		r.OELs[row["cas"]] = o
		return nil
	})
	load(fileLEL, func(row map[string]string) error {
		v, err := num(row, "lel_pct_vol")
		r.LELs[row["cas"]] = LEL{Name: row["name_zh"], PctVol: v, Unverified: strings.Contains(row["note"], "unverified")}
		return err
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

func num(row map[string]string, col string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(row[col]), 64)
	if err != nil {
		return 0, fmt.Errorf("column %s: %w", col, err)
	}
	return v, nil
}

// readCSV calls each for every data row; lines starting with # are comments.
func readCSV(fsys fs.FS, name string, each func(map[string]string) error) error {
	f, err := fsys.Open(name)
	if err != nil {
		return fmt.Errorf("reference table: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comment = '#'
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("%s: header: %w", name, err)
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		row := make(map[string]string, len(header))
		for i, h := range header {
			row[h] = rec[i]
		}
		if err := each(row); err != nil {
			line, _ := cr.FieldPos(0)
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
}

// ValidCAS reports whether s is a CAS registry number with a correct check digit.
func ValidCAS(s string) bool {
	if !casRE.MatchString(s) || casRE.FindString(s) != s {
		return false
	}
	digits := strings.ReplaceAll(s[:len(s)-2], "-", "")
	sum := 0
	for i := range len(digits) {
		sum += int(digits[len(digits)-1-i]-'0') * (i + 1)
	}
	return sum%10 == int(s[len(s)-1]-'0')
}
