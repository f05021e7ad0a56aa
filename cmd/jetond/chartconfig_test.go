package main

import (
	"path/filepath"
	"testing"

	"github.com/jeton-dev/jeton/server"
)

// TestChartConfigsAreValid: the jetond configs and policies the Helm chart
// renders (kept as golden files by deploy/chart's test, which fails when
// they drift from the chart) pass jetond's own start-up validation.
func TestChartConfigsAreValid(t *testing.T) {
	for _, values := range []string{"minimal", "full"} {
		t.Run(values, func(t *testing.T) {
			dir := filepath.Join("..", "..", "deploy", "chart", "testdata", values)
			c, err := LoadConfig(filepath.Join(dir, "jetond.yaml"), func(string) string { return "" })
			if err != nil {
				t.Fatalf("the chart renders a config jetond refuses: %v", err)
			}
			classes, err := c.classes()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, cl := range classes {
				names = append(names, cl.Name)
			}
			if _, err := server.LoadPolicy(filepath.Join(dir, "policy.yaml"), names); err != nil {
				t.Fatalf("the chart renders a policy jetond refuses: %v", err)
			}
		})
	}
}
