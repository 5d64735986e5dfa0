package sqlstore

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/umbra-idm/umbra/connector"
)

// wireValues is an attribute's values in JSON. A value that is valid UTF-8
// without NUL is a JSON string; any other (binary) value is an object
// {"b64": "<base64>"}, because JSON text cannot carry invalid UTF-8 and
// PostgreSQL's jsonb rejects \u0000.
type wireValues []string

// wireAttrs is attributes in JSON, binary-safe values and names alike: a
// name that is not plain text, or that starts with binaryNamePrefix, is
// stored as binaryNamePrefix and its base64.
type wireAttrs connector.Attributes

type binaryValue struct {
	B64 []byte `json:"b64"`
}

// wireString is any other string of the stored JSON (attribute names in
// deltas, error texts, identifiers of set-aside changes), binary-safe like
// a value.
type wireString string

// MarshalJSON implements json.Marshaler.
func (w wireString) MarshalJSON() ([]byte, error) {
	if plainText(string(w)) {
		return json.Marshal(string(w))
	}
	return json.Marshal(binaryValue{B64: []byte(w)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (w *wireString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var bv binaryValue
		if err := json.Unmarshal(b, &bv); err != nil {
			return err
		}
		*w = wireString(bv.B64)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*w = wireString(s)
	return nil
}

func plainText(v string) bool { return utf8.ValidString(v) && !strings.ContainsRune(v, 0) }

// MarshalJSON implements json.Marshaler.
func (w wireValues) MarshalJSON() ([]byte, error) {
	if w == nil {
		return []byte("null"), nil
	}
	items := make([]wireString, len(w))
	for i, v := range w {
		items[i] = wireString(v)
	}
	return json.Marshal(items)
}

// UnmarshalJSON implements json.Unmarshaler.
func (w *wireValues) UnmarshalJSON(b []byte) error {
	var items []wireString
	if err := json.Unmarshal(b, &items); err != nil {
		return err
	}
	if items == nil {
		*w = nil
		return nil
	}
	out := make(wireValues, len(items))
	for i, v := range items {
		out[i] = string(v)
	}
	*w = out
	return nil
}

const binaryNamePrefix = "\x01b64:"

// MarshalJSON implements json.Marshaler (see appendAttrsJSON).
func (a wireAttrs) MarshalJSON() ([]byte, error) {
	return appendAttrsJSON(nil, connector.Attributes(a)), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *wireAttrs) UnmarshalJSON(b []byte) error {
	var m map[string]wireValues
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil {
		*a = nil
		return nil
	}
	out := make(wireAttrs, len(m))
	for k, v := range m {
		if strings.HasPrefix(k, binaryNamePrefix) {
			var name []byte
			if err := json.Unmarshal([]byte(`"`+k[len(binaryNamePrefix):]+`"`), &name); err != nil {
				return err
			}
			k = string(name)
		}
		out[k] = []string(v)
	}
	*a = out
	return nil
}
