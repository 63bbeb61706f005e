package postgres_test

import (
	"encoding"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/careteam/careteam/server/internal/careteam"
)

// TestStoredEventFormIsStable: the outbox stores each event as the JSON of
// careteam.Event, so renaming or retyping a field of it (or of a resource
// it carries) would silently change how history already stored reads.
// The form's every key and type is listed in testdata/event_form.txt; a
// change to it must come with a migration of stored payloads (or a json
// tag that keeps the old key), and then an edit of that file.
func TestStoredEventFormIsStable(t *testing.T) {
	got := eventForm(reflect.TypeFor[careteam.Event](), "", map[reflect.Type]bool{})
	slices.Sort(got)
	want, err := os.ReadFile("testdata/event_form.txt")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "\n")+"\n" != string(want) {
		var added, gone []string
		wantKeys := strings.Split(strings.TrimSpace(string(want)), "\n")
		for _, k := range got {
			if !slices.Contains(wantKeys, k) {
				added = append(added, k)
			}
		}
		for _, k := range wantKeys {
			if !slices.Contains(got, k) {
				gone = append(gone, k)
			}
		}
		t.Errorf("the stored event form changed: new %q, gone %q; stored events keep the old form, so migrate them or keep the keys (json tags)", added, gone)
	}
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

// eventForm lists the JSON paths of t with their Go kinds.
func eventForm(t reflect.Type, path string, seen map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(textMarshaler) || t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) {
		return []string{path + " " + t.String()}
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return []string{path + " bytes"}
		}
		return eventForm(t.Elem(), path+"[]", seen)
	case reflect.Map:
		return eventForm(t.Elem(), path+"{}", seen)
	case reflect.Struct:
		if seen[t] {
			return []string{path + " " + t.String() + " (again)"}
		}
		seen[t] = true
		defer delete(seen, t)
		var out []string
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			name := f.Name
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == "-" {
				continue
			} else if tag != "" {
				name = tag
			}
			if f.Anonymous && f.Tag.Get("json") == "" {
				out = append(out, eventForm(f.Type, path, seen)...)
				continue
			}
			out = append(out, eventForm(f.Type, strings.TrimPrefix(path+"."+name, "."), seen)...)
		}
		return out
	default:
		return []string{path + " " + t.Kind().String()}
	}
}
