// Package grafana_test checks the shipped Grafana dashboard against
// Grafana's own dashboard schema, as generated into the Grafana Foundation
// SDK: strict decoding (no unknown field, every required field, the right
// types, each panel's options by its plugin's schema) and its validation.
// It stands in for importing the file into a Grafana, which this machine
// does not have; deploy/check.sh checks the queries and metric names.
package grafana_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func TestDashboardMatchesGrafanaSchema(t *testing.T) {
	raw, err := os.ReadFile("glmctl.json")
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatalf("not JSON: %v", err)
	}

	// The export envelope (what Grafana's import page reads before the
	// dashboard): which plugins it needs, which inputs it asks for.
	var requires []struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	strict(t, top["__requires"], &requires)
	need := map[string]bool{}
	for _, r := range requires {
		need[r.Type+"/"+r.ID] = r.Version != ""
	}
	if !need["grafana/grafana"] || !need["datasource/prometheus"] {
		t.Errorf("__requires = %+v, want grafana and the prometheus datasource, with versions", requires)
	}
	var inputs []struct {
		Name     string `json:"name"`
		Label    string `json:"label"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	}
	strict(t, top["__inputs"], &inputs)
	delete(top, "__requires")
	delete(top, "__inputs")
	model, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}

	plugins.RegisterDefaultPlugins() // panel options and queries by their plugins' schemas
	//lint:ignore SA1019 the file is the classic (v1) dashboard model, what Grafana's import page and file provisioning read; dashboardv2 is the newer, different format.
	var d dashboard.Dashboard
	if err := schemaErr(d.UnmarshalJSONStrict(model)); err != nil {
		t.Fatalf("the dashboard does not match Grafana's schema:\n%v", err)
	}
	if err := schemaErr(d.Validate()); err != nil {
		t.Fatalf("the dashboard does not validate:\n%v", err)
	}
	if d.Title == nil || *d.Title == "" || d.Uid == nil || *d.Uid == "" || len(d.Panels) == 0 {
		t.Fatalf("title %v, uid %v, %d panels", d.Title, d.Uid, len(d.Panels))
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("templating variables %v, want datasource and instance", vars)
	}
}

// schemaErr is err, or nil for the SDK's empty error list (it returns its
// cog.BuildErrors typed even when there is none).
func schemaErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// strict decodes a JSON value into v, refusing unknown fields.
func strict(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
}
