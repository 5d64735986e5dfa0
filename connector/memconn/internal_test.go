package memconn

import (
	"slices"
	"testing"

	"github.com/umbra-idm/umbra/connector"
)

func TestFormatUID(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]string{0: "u-000000", 1: "u-000001", 99999: "u-099999", 100000: "u-100000", 123456: "u-123456", 1234567: "u-1234567"} {
		if got := formatUID(n); got != want {
			t.Errorf("formatUID(%d) = %q; want %q", n, got, want)
		}
	}
}

func TestNormalizeSharesNothing(t *testing.T) {
	t.Parallel()
	in := connector.Attributes{"a": {"z", "x", "z"}, "b": {"y"}, "c": {}}
	out := normalize(in)
	if !slices.Equal(out["a"], []string{"x", "z"}) || !slices.Equal(out["b"], []string{"y"}) || len(out) != 2 {
		t.Fatalf("normalize = %v", out)
	}
	if !slices.Equal(in["a"], []string{"z", "x", "z"}) {
		t.Fatalf("normalize changed its input: %v", in)
	}
	// Appending to one attribute never writes into another's values.
	a := append(out["a"], "appended")
	_ = a
	b := append(out["b"], "appended")
	_ = b
	if !slices.Equal(out["a"], []string{"x", "z"}) || !slices.Equal(out["b"], []string{"y"}) {
		t.Fatalf("appending wrote into a neighbour: %v", out)
	}
}
