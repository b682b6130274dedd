package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hw_things_total", Help: "x"}, []string{"result", "kind"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "hw_level", Help: "x"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hw_seconds", Help: "x"})
	reg.MustRegister(c, g, h)
	c.WithLabelValues("ok", "a").Add(3)
	c.WithLabelValues("failed", "a").Add(1)
	g.Set(2.5)
	h.Observe(1)
	h.Observe(2)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hw_things_total", []string{"result", "ok"}, 3},
		{"hw_things_total", []string{"result", "failed", "kind", "a"}, 1},
		{"hw_things_total", []string{"result", "failed", "kind", "b"}, 0},
		{"hw_level", nil, 2.5},
		{"hw_seconds", nil, 2},
		{"hw_absent", nil, 0},
	} {
		if got := Value(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s %v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
