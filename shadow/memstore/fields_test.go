package memstore

import (
	"reflect"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// TestEveryShadowFieldKept fills every field of shadow.Shadow by
// reflection and checks that a stored shadow gives each back: the record
// lists the fields one by one, so a field added to Shadow later fails here
// until the record keeps it.
func TestEveryShadowFieldKept(t *testing.T) {
	t.Parallel()
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	in := &shadow.Shadow{}
	v := reflect.ValueOf(in).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.String:
			f.SetString("value of " + name)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Uint8:
			f.SetUint(1) // the first value of each enum
		case reflect.Struct:
			if f.Type() != reflect.TypeFor[time.Time]() {
				t.Fatalf("field %s of type %s: teach this test to fill it", name, f.Type())
			}
			f.Set(reflect.ValueOf(at.Add(time.Duration(i) * time.Hour)))
		case reflect.Map:
			f.Set(reflect.ValueOf(connector.Attributes{"cn": {"a", "b"}}))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]shadow.PendingOperation{{
				ID: 1, Delta: connector.Delta{Type: connector.DeltaDelete}, Type: shadow.OpAsync,
				Status: shadow.StatusExecuting, Result: shadow.ResultInProgress, AsyncRef: "ref", RequestedAt: at,
			}}))
		default:
			t.Fatalf("field %s of kind %s: teach this test to fill it", name, f.Kind())
		}
	}
	if err := in.Validate(); err != nil {
		t.Fatalf("filled shadow is invalid: %v", err)
	}
	clk := connector.NewFakeClock(at)
	s := New(Options{Clock: clk})
	want := in.Clone()
	if err := s.Create(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(t.Context(), in.ID)
	if err != nil {
		t.Fatal(err)
	}
	want.Version, want.CreatedAt, want.UpdatedAt = 1, at, at // the store's own
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range gv.NumField() {
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if gt, ok := g.(time.Time); ok {
			if !gt.Equal(w.(time.Time)) {
				t.Errorf("%s: got %v, want %v", gv.Type().Field(i).Name, g, w)
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: got %v, want %v", gv.Type().Field(i).Name, g, w)
		}
	}
}
