// Package config loads the plant and rule files (docs/CONFIG.md) strictly:
// every error of every file at once, each as file:line:col: field: what is
// wrong, and compiles them into a model.Plant with per-sensor rules.
package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"hazardwatch/configs"
	"hazardwatch/internal/chem"
	"hazardwatch/internal/model"
)

// File is one config file: the name errors are reported under, and its bytes.
type File struct {
	Name string
	Data []byte
}

// Config is a loaded, checked plant with its rules.
type Config struct {
	Plant *model.Plant
	// Rules holds one entry per sensor, by sensor index.
	Rules []model.SensorRules
	// Alarms are the alarm lifecycle's settings: the rule files' alarms
	// section over model.DefaultAlarmRules.
	Alarms model.AlarmRules
	// Gateways holds one entry per gateway, by gateway index.
	Gateways []model.GatewayRules
	// Grades holds GB 18218 grading per hazard source, by index.
	Grades []chem.Grade
	// Warnings are findings that do not stop the plant from running but
	// that an engineer must look at (unverified reference data, say).
	Warnings []Diag
	Files    []string
}

// LoadDemo loads the demo plant embedded in the binary (configs/demo) with
// the embedded reference tables.
func LoadDemo() (*Config, error) {
	ref, err := Reference()
	if err != nil {
		return nil, err
	}
	return LoadFS(configs.Demo(), ".", "configs/demo", ref)
}

// Reference loads the reference tables embedded in the binary
// (configs/reference).
func Reference() (*chem.Reference, error) {
	ref, err := chem.Load(configs.Reference())
	if err != nil {
		return nil, fmt.Errorf("config: reference tables: %w", err)
	}
	return ref, nil
}

// LoadDirOrDemo loads the folder dir with the embedded reference tables,
// or the embedded demo plant when dir is "": what every command's
// --config flag means.
func LoadDirOrDemo(dir string) (*Config, error) {
	if dir == "" {
		return LoadDemo()
	}
	ref, err := Reference()
	if err != nil {
		return nil, err
	}
	return LoadDir(dir, ref)
}

// LoadDir loads every *.yaml / *.yml file below dir (sub-folders included,
// in name order); errors name each file as dir/relative-path.
func LoadDir(dir string, ref *chem.Reference) (*Config, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("config: %s is not a folder", dir)
	}
	return LoadFS(os.DirFS(dir), ".", dir, ref)
}

// LoadFS loads the YAML files below root in fsys; display is prefixed to
// file names in errors.
func LoadFS(fsys fs.FS, root, display string, ref *chem.Reference) (*Config, error) {
	var files []File
	err := fs.WalkDir(fsys, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if root == "." {
			rel = p
		}
		files = append(files, File{Name: filepath.Join(display, filepath.FromSlash(rel)), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("config: no .yaml files in %s", display)
	}
	return Load(files, ref)
}

// Load checks files together and compiles them. The error, when not nil,
// is an Errors listing every problem found.
func Load(files []File, ref *chem.Reference) (*Config, error) {
	l := &loader{ref: ref, pos: map[any]Pos{}, missing: map[any]bool{}}
	for _, f := range files {
		l.readFile(f)
	}
	cfg := &Config{}
	for _, f := range files {
		cfg.Files = append(cfg.Files, f.Name)
	}
	cfg.Plant = l.compilePlant()
	if cfg.Plant != nil {
		cfg.Grades = l.grades
		cfg.Rules = l.compileRules(cfg.Plant)
		cfg.Alarms = l.compileAlarms()
		cfg.Gateways = l.compileGateways(cfg.Plant)
	}
	l.errs = dedup(l.errs)
	l.warns = dedup(l.warns)
	cfg.Warnings = l.warns
	if len(l.errs) > 0 {
		return cfg, Errors(l.errs)
	}
	return cfg, nil
}

type loader struct {
	ref     *chem.Reference
	pos     map[any]Pos
	missing map[any]bool
	errs    []Diag
	warns   []Diag
	plants  []*plantDoc
	rules   []*rulesDoc
	grades  []chem.Grade
	// sensorDocs is the document of each compiled sensor, by index.
	sensorDocs []*sensorDoc

	unverified []unverifiedUse
}

type unverifiedUse struct {
	what string
	at   *string
	uses int
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDoc parses a file into its document node and reads its kind.
func parseDoc(f File) (doc *yaml.Node, kind string, errs []Diag) {
	var root yaml.Node
	if err := yaml.Unmarshal(f.Data, &root); err != nil {
		d := Diag{Pos: Pos{File: f.Name, Line: 1, Col: 1}, Msg: err.Error()}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			d.Line, _ = strconv.Atoi(m[1])
			d.Msg = "not valid YAML: " + m[2]
		}
		return nil, "", []Diag{d}
	}
	if len(root.Content) == 0 {
		return nil, "", []Diag{{Pos: Pos{File: f.Name, Line: 1, Col: 1}, Msg: "empty file: it must start with kind:"}}
	}
	doc = root.Content[0]
	if doc.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == "kind" {
				kind = doc.Content[i+1].Value
			}
		}
	}
	return doc, kind, nil
}

// Kinds of file that other packages read: the loader passes over them.
var otherKinds = []string{"scenario"}

func (l *loader) readFile(f File) {
	doc, kind, errs := parseDoc(f)
	if errs != nil {
		l.errs = append(l.errs, errs...)
		return
	}
	d := &decoder{file: f.Name, pos: l.pos, missing: l.missing}
	switch {
	case kind == "plant":
		p := &plantDoc{}
		d.decode(doc, reflectValue(p), "")
		l.plants = append(l.plants, p)
	case kind == "rules":
		r := &rulesDoc{}
		d.decode(doc, reflectValue(r), "")
		l.rules = append(l.rules, r)
	case oneOf(kind, otherKinds...):
	default:
		msg := "required: plant, rules or scenario"
		if kind != "" {
			msg = fmt.Sprintf("must be plant, rules or scenario, not %q", kind)
		}
		l.errs = append(l.errs, Diag{Pos: Pos{File: f.Name, Line: doc.Line, Col: doc.Column, Path: "kind"}, Msg: msg})
	}
	l.errs = append(l.errs, d.errs...)
}

// Positions tells where each value decoded by DecodeFile stood.
type Positions struct {
	pos map[any]Pos
}

// Of returns the place of the value at ptr (a pointer into the decoded
// struct), for errors found after decoding.
func (p Positions) Of(ptr any) Pos {
	if at, ok := p.pos[ptr]; ok {
		return at
	}
	return Pos{File: "?", Path: "?"}
}

// Errorf makes a diagnostic at the value at ptr.
func (p Positions) Errorf(ptr any, format string, args ...any) Diag {
	return Diag{Pos: p.Of(ptr), Msg: fmt.Sprintf(format, args...)}
}

// DecodeFile decodes a file of the given kind into v, a pointer to a struct
// whose fields carry yaml tags (and hw:"required", hw:"key" as in this
// package's documents), as strictly as plant files: every error at once, as
// Errors. It is how other packages read their own kinds of config file.
func DecodeFile(f File, kind string, v any) (Positions, error) {
	doc, got, errs := parseDoc(f)
	if errs != nil {
		return Positions{}, Errors(errs)
	}
	if got != kind {
		return Positions{}, Errors{{Pos: Pos{File: f.Name, Line: doc.Line, Col: doc.Column, Path: "kind"}, Msg: fmt.Sprintf("must be %s, not %q", kind, got)}}
	}
	d := &decoder{file: f.Name, pos: map[any]Pos{}, missing: map[any]bool{}}
	d.decode(doc, reflect.ValueOf(v).Elem(), "")
	if len(d.errs) > 0 {
		return Positions{pos: d.pos}, Errors(dedup(d.errs))
	}
	return Positions{pos: d.pos}, nil
}

// at returns where the value at ptr was read from.
func (l *loader) at(ptr any) Pos {
	if p, ok := l.pos[ptr]; ok {
		return p
	}
	return Pos{File: "?", Path: "?"}
}

func (l *loader) errorf(ptr any, format string, args ...any) {
	if l.missing[ptr] {
		return // "required" was reported where it is missing
	}
	l.errs = append(l.errs, Diag{Pos: l.at(ptr), Msg: fmt.Sprintf(format, args...)})
}

// reported says whether an error was found at the value at ptr already
// (the decoder's: a negative duration, say), so that a later check of the
// zero value it left does not report it a second time.
func (l *loader) reported(ptr any) bool {
	p, ok := l.pos[ptr]
	return ok && slices.ContainsFunc(l.errs, func(d Diag) bool { return d.Pos == p })
}

// fieldErrorf reports a missing or wrong field of the mapping at ptr.
func (l *loader) fieldErrorf(ptr any, field, format string, args ...any) {
	p := l.at(ptr)
	p.Path = join(p.Path, field)
	l.errs = append(l.errs, Diag{Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) warnf(ptr any, format string, args ...any) {
	if l.missing[ptr] {
		return
	}
	l.warns = append(l.warns, Diag{Pos: l.at(ptr), Msg: fmt.Sprintf(format, args...)})
}

func where(p Pos) string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// index checks ids of one object kind: well formed and unique across files.
type index struct {
	l    *loader
	what string
	ids  map[string]int32
	ptrs []*string
}

func newIndex(l *loader, what string) *index {
	return &index{l: l, what: what, ids: map[string]int32{}}
}

// add registers an id; it returns false when the id is bad or taken.
func (x *index) add(id *string) bool {
	if *id == "" {
		return false // a required field left out: reported by the decoder
	}
	if !idRE.MatchString(*id) {
		x.l.errorf(id, "%q is not a valid id: use 1-64 letters, digits, - and _", *id)
		return false
	}
	if first, ok := x.ids[*id]; ok {
		x.l.errorf(id, "%s %q is already defined at %s", x.what, *id, where(x.l.at(x.ptrs[first])))
		return false
	}
	x.ids[*id] = int32(len(x.ptrs))
	x.ptrs = append(x.ptrs, id)
	return true
}

// ref resolves a reference; a missing one is an error naming what exists.
func (x *index) ref(id *string) (int32, bool) {
	if *id == "" {
		return -1, false // a required field left out: reported by the decoder
	}
	if i, ok := x.ids[*id]; ok {
		return i, true
	}
	known := make([]string, 0, len(x.ids))
	for k := range x.ids {
		known = append(known, k)
	}
	slices.Sort(known)
	switch s := Suggest(*id, known); {
	case s != "":
		x.l.errorf(id, "no %s %q (did you mean %s?)", x.what, *id, s)
	case len(known) == 0:
		x.l.errorf(id, "no %s %q: none is defined", x.what, *id)
	case len(known) <= 8:
		x.l.errorf(id, "no %s %q (defined: %s)", x.what, *id, strings.Join(known, ", "))
	default:
		x.l.errorf(id, "no %s %q", x.what, *id)
	}
	return -1, false
}

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

func oneOf(s string, allowed ...string) bool { return slices.Contains(allowed, s) }

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
