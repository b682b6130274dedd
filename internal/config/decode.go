package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder turns a yaml.Node tree into Go structs strictly, collecting every
// error instead of stopping at the first, and remembering where each value
// stood so that later checks (references, ranges) can point at it.
//
// Struct fields are matched by their `yaml` tag; `hw:"required"` marks a
// field that must be present; a slice of structs one of whose fields is
// tagged `hw:"key"` is written in YAML as a mapping from that key. A
// pointer to a struct with a bool field tagged `hw:"null"` takes `~` as a
// value of its own: the struct with that field set (a section of rules
// removed), where other pointers stay nil (left out).
type decoder struct {
	file string
	errs []Diag
	pos  map[any]Pos // pointer to a decoded value → where it came from
	// missing holds the required fields left out (reported once here, so
	// that later checks of their empty values stay quiet).
	missing map[any]bool
}

// nodeDecoder is implemented by types that read themselves from a node.
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	nodeDecType  = reflect.TypeFor[nodeDecoder]()
)

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, Diag{Pos: Pos{File: d.file, Line: n.Line, Col: n.Column, Path: path}, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) mark(v reflect.Value, n *yaml.Node, path string) {
	if v.CanAddr() {
		d.pos[v.Addr().Interface()] = Pos{File: d.file, Line: n.Line, Col: n.Column, Path: path}
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if n.Tag == "!!null" {
		return "empty"
	}
	return strconv.Quote(n.Value)
}

// decode fills v from n; v must be addressable.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	d.mark(v, n, path)
	if v.Kind() != reflect.Pointer && reflect.PointerTo(v.Type()).Implements(nodeDecType) {
		if err := v.Addr().Interface().(nodeDecoder).decodeNode(n); err != nil {
			d.errorf(n, path, "%v", err)
		}
		return
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "must be a duration such as 500ms, 2s or 5m, not %s", describe(n))
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil || dur < 0 {
			d.errorf(n, path, "must be a duration such as 500ms, 2s or 5m, not %s", describe(n))
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Tag == "!!null" {
			if f, ok := nullField(v.Type().Elem()); ok {
				p := reflect.New(v.Type().Elem())
				p.Elem().Field(f).SetBool(true)
				d.mark(p.Elem(), n, path)
				v.Set(p)
			}
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.errorf(n, path, "must be text, not %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n, path, "must be true or false, not %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Int16, reflect.Int8:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.errorf(n, path, "must be a whole number, not %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n, path, "must be a number, not %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", v.Type()))
	}
}

type fieldInfo struct {
	name     string
	index    int
	required bool
}

func fieldsOf(t reflect.Type) (fields []fieldInfo, key int) {
	key = -1
	for i := range t.NumField() {
		f := t.Field(i)
		hw := f.Tag.Get("hw")
		if hw == "key" {
			key = i
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields = append(fields, fieldInfo{name: name, index: i, required: hw == "required"})
	}
	return fields, key
}

// nullField finds the field of t tagged hw:"null", if t is a struct.
func nullField(t reflect.Type) (int, bool) {
	if t.Kind() != reflect.Struct {
		return 0, false
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("hw") == "null" && f.Type.Kind() == reflect.Bool {
			return i, true
		}
	}
	return 0, false
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of fields, not %s", describe(n))
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				d.markMissing(v.Field(i))
			}
		}
		return
	}
	fields, _ := fieldsOf(v.Type())
	seen := make(map[string]bool, len(fields))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		name := k.Value
		fpath := join(path, name)
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "field names must be text")
			continue
		}
		idx := -1
		names := make([]string, 0, len(fields))
		for _, f := range fields {
			names = append(names, f.name)
			if f.name == name {
				idx = f.index
			}
		}
		if idx < 0 {
			if s := Suggest(name, names); s != "" {
				d.errorf(k, fpath, "unknown field (did you mean %s?)", s)
			} else {
				d.errorf(k, fpath, "unknown field (known: %s)", strings.Join(names, ", "))
			}
			continue
		}
		if seen[name] {
			d.errorf(k, fpath, "given twice")
			continue
		}
		seen[name] = true
		d.decode(val, v.Field(idx), fpath)
	}
	for _, f := range fields {
		if f.required && !seen[f.name] {
			d.errorf(n, join(path, f.name), "required")
			d.markMissing(v.Field(f.index))
		}
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	et := v.Type().Elem()
	if et.Kind() == reflect.Struct {
		if _, key := fieldsOf(et); key >= 0 {
			d.decodeKeyed(n, v, path, key)
			return
		}
	}
	if n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "must be a list, not %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	v.Set(s)
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
}

// decodeKeyed reads a mapping id → fields into a slice of structs, keeping
// the file's order and each key's position.
func (d *decoder) decodeKeyed(n *yaml.Node, v reflect.Value, path string, key int) {
	if n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping from id to fields, not %s", describe(n))
		return
	}
	type entry struct{ k, val *yaml.Node }
	var entries []entry
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.errorf(k, path, "keys must be text")
			continue
		}
		if seen[k.Value] {
			d.errorf(k, join(path, k.Value), "given twice")
			continue
		}
		seen[k.Value] = true
		entries = append(entries, entry{k, val})
	}
	s := reflect.MakeSlice(v.Type(), len(entries), len(entries))
	v.Set(s)
	for i, en := range entries {
		e := s.Index(i)
		epath := join(path, en.k.Value)
		e.Field(key).SetString(en.k.Value)
		d.mark(e.Field(key), en.k, epath)
		d.decode(en.val, e, epath)
	}
}

// markMissing marks v and, for a struct, every field inside it as left out.
func (d *decoder) markMissing(v reflect.Value) {
	d.missing[v.Addr().Interface()] = true
	if v.Kind() == reflect.Struct {
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				d.markMissing(v.Field(i))
			}
		}
	}
}
