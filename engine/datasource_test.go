package engine

import (
	"errors"
	"testing"
)

func TestDataSourceValidateAndClone(t *testing.T) {
	ds := &DataSource{FQN: "a.b", Kind: "rest", Config: map[string]string{"k": "v"}, KeyFields: []string{"id"}, Labels: map[string]string{"l": "1"}}
	if err := ds.Validate(); err != nil {
		t.Fatal(err)
	}
	c := ds.Clone()
	c.Config["k"], c.KeyFields[0], c.Labels["l"] = "x", "x", "x"
	if ds.Config["k"] != "v" || ds.KeyFields[0] != "id" || ds.Labels["l"] != "1" {
		t.Errorf("Clone shares state: %+v", ds)
	}
	for _, tt := range []struct {
		ds   DataSource
		path string
	}{
		{DataSource{FQN: "", Kind: "rest"}, "metadata.name"},
		{DataSource{FQN: "a.b+sum", Kind: "rest"}, "metadata.name"},
		{DataSource{FQN: "a.b"}, "spec.kind"},
		{DataSource{FQN: "a.b", Kind: "rest", Config: map[string]string{"": "x"}}, "spec.config"},
		{DataSource{FQN: "a.b", Kind: "rest", KeyFields: []string{"a", " "}}, "spec.keyFields[1]"},
	} {
		err := tt.ds.Validate()
		var fe *FieldError
		if !errors.Is(err, ErrInvalidDataSource) || !errors.As(err, &fe) || fe.Path != tt.path {
			t.Errorf("Validate(%+v) = %v, want a FieldError for %s", tt.ds, err, tt.path)
		}
	}
}
